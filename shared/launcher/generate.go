package launcher

// The gRPC wire code in internal/launcherpb is generated from proto/launcher.proto and
// committed, so building needs no protoc. Regenerate after editing the .proto with
//
//	go generate ./shared/launcher
//
// using protoc 3.21.12 (Debian bookworm: apt-get install -y protobuf-compiler),
// protoc-gen-go v1.36.12 (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12) and
// protoc-gen-go-grpc v1.6.2 (go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2),
// matching google.golang.org/protobuf v1.36.12 and google.golang.org/grpc v1.85.0 in go.mod.

//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/kbase/cts/shared/launcher --go-grpc_out=. --go-grpc_opt=module=github.com/kbase/cts/shared/launcher proto/launcher.proto
