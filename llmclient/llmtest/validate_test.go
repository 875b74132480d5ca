package llmtest_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	openai "github.com/sashabaranov/go-openai"
)

func TestBadRequests(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithMaxBodyBytes(1024))
	const (
		chat  = llmtest.PathChatCompletions
		embed = llmtest.PathEmbeddings
		compl = llmtest.PathCompletions
		resp  = llmtest.PathResponses
	)
	badJSON := `{"error":{"message":"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)","type":"invalid_request_error","param":null,"code":null}}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"invalid json", "POST", chat, `{"model":`, 400, badJSON},
		{"not an object", "POST", embed, `[1,2]`, 400, badJSON},
		{"empty body", "POST", compl, ``, 400, badJSON},
		{"missing model", "POST", chat, `{"messages":[{"role":"user","content":"hi"}]}`, 400,
			`{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":"model","code":null}}`},
		{"empty model", "POST", embed, `{"model":"","input":"x"}`, 400,
			`{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":"model","code":null}}`},
		{"model not a string", "POST", chat, `{"model":4,"messages":[]}`, 400,
			`{"error":{"message":"Invalid type for 'model': expected a string, but got an integer instead.","type":"invalid_request_error","param":"model","code":"invalid_type"}}`},
		{"missing messages", "POST", chat, `{"model":"m"}`, 400,
			`{"error":{"message":"Missing required parameter: 'messages'.","type":"invalid_request_error","param":"messages","code":"missing_required_parameter"}}`},
		{"empty messages", "POST", chat, `{"model":"m","messages":[]}`, 400,
			`{"error":{"message":"Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.","type":"invalid_request_error","param":"messages","code":"empty_array"}}`},
		{"messages not an array", "POST", chat, `{"model":"m","messages":"hi"}`, 400,
			`{"error":{"message":"Invalid type for 'messages': expected an array of objects, but got a string instead.","type":"invalid_request_error","param":"messages","code":"invalid_type"}}`},
		{"missing role", "POST", chat, `{"model":"m","messages":[{"content":"hi"}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'messages[0].role'.","type":"invalid_request_error","param":"messages[0].role","code":"missing_required_parameter"}}`},
		{"bad role", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}`, 400,
			`{"error":{"message":"Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.","type":"invalid_request_error","param":"messages[1].role","code":"invalid_value"}}`},
		{"bad content", "POST", chat, `{"model":"m","messages":[{"role":"user","content":1.5}]}`, 400,
			`{"error":{"message":"Invalid type for 'messages[0].content': expected one of a string or array of objects, but got a decimal instead.","type":"invalid_request_error","param":"messages[0].content","code":"invalid_type"}}`},
		{"stream not a boolean", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"stream":"yes"}`, 400,
			`{"error":{"message":"Invalid type for 'stream': expected a boolean, but got a string instead.","type":"invalid_request_error","param":"stream","code":"invalid_type"}}`},
		{"stream_options without stream", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"stream_options":{"include_usage":true}}`, 400,
			`{"error":{"message":"The 'stream_options' parameter is only allowed when 'stream' is enabled.","type":"invalid_request_error","param":"stream_options","code":null}}`},
		{"max_tokens zero", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"max_tokens":0}`, 400,
			`{"error":{"message":"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.","type":"invalid_request_error","param":"max_tokens","code":"integer_below_min_value"}}`},
		{"missing input", "POST", embed, `{"model":"m"}`, 400,
			`{"error":{"message":"Missing required parameter: 'input'.","type":"invalid_request_error","param":"input","code":"missing_required_parameter"}}`},
		{"empty input", "POST", embed, `{"model":"m","input":""}`, 400,
			`{"error":{"message":"Invalid 'input': empty input. Expected a non-empty string or array of integers.","type":"invalid_request_error","param":"input","code":"empty_input"}}`},
		{"input wrong type", "POST", embed, `{"model":"m","input":{"a":1}}`, 400,
			`{"error":{"message":"Invalid type for 'input': expected one of a string, an array of strings, an array of integers, or an array of arrays of integers, but got an object instead.","type":"invalid_request_error","param":"input","code":"invalid_type"}}`},
		{"bad encoding_format", "POST", embed, `{"model":"m","input":"x","encoding_format":"int8"}`, 400,
			`{"error":{"message":"Invalid value: 'int8'. Supported values are: 'float' and 'base64'.","type":"invalid_request_error","param":"encoding_format","code":"invalid_value"}}`},
		{"missing prompt", "POST", compl, `{"model":"m"}`, 400,
			`{"error":{"message":"Missing required parameter: 'prompt'.","type":"invalid_request_error","param":"prompt","code":"missing_required_parameter"}}`},
		{"responses missing model", "POST", resp, `{"input":"x"}`, 400,
			`{"error":{"message":"Missing required parameter: 'model'.","type":"invalid_request_error","param":"model","code":"missing_required_parameter"}}`},
		{"responses model not a string", "POST", resp, `{"model":["m"],"input":"x"}`, 400,
			`{"error":{"message":"Invalid type for 'model': expected a string, but got an array instead.","type":"invalid_request_error","param":"model","code":"invalid_type"}}`},
		{"responses missing input", "POST", resp, `{"model":"m"}`, 400,
			`{"error":{"message":"Missing required parameter: 'input'.","type":"invalid_request_error","param":"input","code":"missing_required_parameter"}}`},
		{"responses input wrong type", "POST", resp, `{"model":"m","input":5}`, 400,
			`{"error":{"message":"Invalid type for 'input': expected one of a string or array of objects, but got an integer instead.","type":"invalid_request_error","param":"input","code":"invalid_type"}}`},
		{"responses empty input", "POST", resp, `{"model":"m","input":[]}`, 400,
			`{"error":{"message":"Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.","type":"invalid_request_error","param":"input","code":"empty_array"}}`},
		{"responses input item not an object", "POST", resp, `{"model":"m","input":["x"]}`, 400,
			`{"error":{"message":"Invalid type for 'input[0]': expected an object, but got a string instead.","type":"invalid_request_error","param":"input[0]","code":"invalid_type"}}`},
		{"responses bad role", "POST", resp, `{"model":"m","input":[{"role":"user","content":"a"},{"role":"tool","content":"b"}]}`, 400,
			`{"error":{"message":"Invalid value: 'tool'. Supported values are: 'assistant', 'system', 'developer', and 'user'.","type":"invalid_request_error","param":"input[1].role","code":"invalid_value"}}`},
		{"responses missing content", "POST", resp, `{"model":"m","input":[{"type":"message","role":"user"}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'input[0].content'.","type":"invalid_request_error","param":"input[0].content","code":"missing_required_parameter"}}`},
		{"responses content part text not a string", "POST", resp, `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":1}]}]}`, 400,
			`{"error":{"message":"Invalid type for 'input[0].content[0].text': expected a string, but got an integer instead.","type":"invalid_request_error","param":"input[0].content[0].text","code":"invalid_type"}}`},
		{"responses function call without name", "POST", resp, `{"model":"m","input":[{"type":"function_call","call_id":"c","arguments":"{}"}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'input[0].name'.","type":"invalid_request_error","param":"input[0].name","code":"missing_required_parameter"}}`},
		{"responses instructions not a string", "POST", resp, `{"model":"m","input":"x","instructions":{}}`, 400,
			`{"error":{"message":"Invalid type for 'instructions': expected a string, but got an object instead.","type":"invalid_request_error","param":"instructions","code":"invalid_type"}}`},
		{"responses max_output_tokens too small", "POST", resp, `{"model":"m","input":"x","max_output_tokens":10}`, 400,
			`{"error":{"message":"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 10 instead.","type":"invalid_request_error","param":"max_output_tokens","code":"integer_below_min_value"}}`},
		{"responses stream not a boolean", "POST", resp, `{"model":"m","input":"x","stream":1}`, 400,
			`{"error":{"message":"Invalid type for 'stream': expected a boolean, but got an integer instead.","type":"invalid_request_error","param":"stream","code":"invalid_type"}}`},
		{"tools not an array", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":{}}`, 400,
			`{"error":{"message":"Invalid type for 'tools': expected an array of objects, but got an object instead.","type":"invalid_request_error","param":"tools","code":"invalid_type"}}`},
		{"tool without type", "POST", resp, `{"model":"m","input":"x","tools":[{"name":"f"}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'tools[0].type'.","type":"invalid_request_error","param":"tools[0].type","code":"missing_required_parameter"}}`},
		{"chat tool without function", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"type":"function"}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'tools[0].function'.","type":"invalid_request_error","param":"tools[0].function","code":"missing_required_parameter"}}`},
		{"chat function without name", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"type":"function","function":{}}]}`, 400,
			`{"error":{"message":"Missing required parameter: 'tools[0].function.name'.","type":"invalid_request_error","param":"tools[0].function.name","code":"missing_required_parameter"}}`},
		{"function name with a space", "POST", resp, `{"model":"m","input":"x","tools":[{"type":"web_search"},{"type":"function","name":"get weather"}]}`, 400,
			`{"error":{"message":"Invalid 'tools[1].name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.","type":"invalid_request_error","param":"tools[1].name","code":"invalid_value"}}`},
		{"parameters not an object", "POST", resp, `{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":"x"}]}`, 400,
			`{"error":{"message":"Invalid type for 'tools[0].parameters': expected an object, but got a string instead.","type":"invalid_request_error","param":"tools[0].parameters","code":"invalid_type"}}`},
		{"bad tool_choice", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"always"}`, 400,
			`{"error":{"message":"Invalid value: 'always'. Supported values are: 'none', 'auto', and 'required'.","type":"invalid_request_error","param":"tool_choice","code":"invalid_value"}}`},
		{"tool_choice without tools", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tool_choice":"required"}`, 400,
			`{"error":{"message":"Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.","type":"invalid_request_error","param":"tool_choice","code":null}}`},
		{"tool_choice names no tool", "POST", resp, `{"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}`, 400,
			`{"error":{"message":"Tool choice 'g' not found in 'tools' parameter.","type":"invalid_request_error","param":"tool_choice","code":null}}`},
		{"chat tool_choice without function", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","name":"f"}}`, 400,
			`{"error":{"message":"Missing required parameter: 'tool_choice.function'.","type":"invalid_request_error","param":"tool_choice.function","code":"missing_required_parameter"}}`},
		{"tool_choice wrong type", "POST", resp, `{"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":true}`, 400,
			`{"error":{"message":"Invalid type for 'tool_choice': expected one of a string or an object, but got a boolean instead.","type":"invalid_request_error","param":"tool_choice","code":"invalid_type"}}`},
		{"unknown path", "POST", "/v1/nope", `{}`, 404,
			`{"error":{"message":"Invalid URL (POST /v1/nope)","type":"invalid_request_error","param":null,"code":null}}`},
		{"wrong method", "GET", chat, ``, 405,
			`{"error":{"message":"Method GET is not allowed for /v1/chat/completions; use POST.","type":"invalid_request_error","param":null,"code":null}}`},
		{"too large", "POST", chat, `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 2000) + `"}]}`, 413,
			`{"error":{"message":"The request body is larger than the limit of 1024 bytes.","type":"invalid_request_error","param":null,"code":"request_too_large"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv.Client(), tc.method, srv.URL+tc.path, tc.body)
			if r.status != tc.status {
				t.Errorf("status = %d, want %d", r.status, tc.status)
			}
			if r.body != tc.want+"\n" {
				t.Errorf("body =\n%s\nwant\n%s", r.body, tc.want)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type = %q", ct)
			}
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
			}
		})
	}
}

func TestBadRequestThroughOpenAI(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	_, err := newOpenAI(srv).CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{Model: "m"})
	apiErr := asAPIError(t, err)
	if apiErr.HTTPStatusCode != 400 || apiErr.Type != "invalid_request_error" || apiErr.Param == nil || *apiErr.Param != "messages" {
		t.Errorf("error = %+v", apiErr)
	}
}

func TestMultiPartContentAndGzip(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	body := `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"two words"},{"type":"image_url","image_url":{"url":"data:,"}}]},{"role":"assistant","content":null,"tool_calls":[]}]}`
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(body))
	zw.Close()
	req, _ := http.NewRequest("POST", srv.URL+llmtest.PathChatCompletions, &buf)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out openai.ChatCompletionResponse
	decodeJSON(t, resp, &out)
	if want := llmtest.ChatPromptTokens("two words", ""); out.Usage.PromptTokens != want {
		t.Errorf("prompt tokens = %d, want %d", out.Usage.PromptTokens, want)
	}
	if got := string(srv.Requests()[0].Body); got != body {
		t.Errorf("recorded body = %q, want the decoded body", got)
	}

	req, _ = http.NewRequest("POST", srv.URL+llmtest.PathChatCompletions, strings.NewReader(body))
	req.Header.Set("Content-Encoding", "br")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("br body: status %d, want 415", resp.StatusCode)
	}
}
