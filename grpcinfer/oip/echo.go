package oip

import "unicode/utf8"

// maxEcho bounds how much of one request value (a model or tensor name, a version, a
// datatype, a shape) an error message repeats. Status messages travel in the grpc-message
// header, and gRPC C-core clients (Python, C++, Triton's own) reset a stream whose headers
// exceed their metadata limit of 8 KiB, so an echoed value of that size would turn a clear
// INVALID_ARGUMENT into a stream reset.
const maxEcho = 256

// echo returns s as an error message may repeat it: whole when it has at most maxEcho bytes,
// otherwise its first maxEcho bytes (cut at a character boundary) followed by "...".
func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
