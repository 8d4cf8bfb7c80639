"""Generated protobuf and gRPC code for Accord's control-plane APIs (see proto/ and scripts/gen-proto.sh)."""
