package llmtest

import (
	"net/http"
	"slices"
	"strings"
)

// modelsCreated is the fixed "created" time of every listed model.
const modelsCreated = 1700000000

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newModel(id string) model {
	return model{ID: id, Object: "model", Created: modelsCreated, OwnedBy: "llmtest"}
}

// listModels answers GET /v1/models.
func (x *exchange) listModels() {
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, id := range x.s.cfg.models {
		list.Data = append(list.Data, newModel(id))
	}
	x.respondJSON(append(mustJSON(list), '\n'))
}

// getModel answers GET /v1/models/{model}.
func (x *exchange) getModel() {
	id := strings.TrimPrefix(x.r.URL.Path, PathModels+"/")
	if !slices.Contains(x.s.cfg.models, id) {
		x.writeAPIError(newAPIError(http.StatusNotFound, "invalid_request_error",
			"The model '"+id+"' does not exist", "model", "model_not_found"))
		return
	}
	x.respondJSON(append(mustJSON(newModel(id)), '\n'))
}
