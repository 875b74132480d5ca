// Package payload builds the request bodies of the mesh benchmark, deterministically, so
// that every run sends the same bytes.
//
//   - [Chat]: a 1 KiB OpenAI chat completion request (JSON), sent to /v1/chat/completions.
//   - [Embeddings]: a batch of 64 embedding vectors of 1536 floats as JSON (about 1 MiB),
//     as a client stores them into a vector index; sent to /v1/vectors.
//   - [Tensor]: a 4 MiB float32 tensor (1024 x 1024, little-endian), sent as
//     application/octet-stream to /v2/models/tensor/infer.
//
// Over gRPC the same payloads travel as Open Inference Protocol ModelInfer requests ([Infer]):
// a BYTES tensor holding the chat JSON, and FP32 tensors in raw_input_contents.
//
// The floats are drawn from a normal distribution from a fixed random source and carry full float32
// precision: that is what embeddings and activations look like, and why they compress
// poorly (ratio about 2 as JSON text, about 1.1 as raw float32).
package payload
