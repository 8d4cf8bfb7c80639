#!/usr/bin/env bash
# Regenerate the Python code for every control-plane API under proto/ into libs/accord/src/accord/proto.
#
# Protos live at proto/accord/<area>/v1/*.proto (proto package accord.<area>.v1). Their generated modules
# become accord.proto.<area>.v1.<name>_pb2 (+ _pb2_grpc, + .pyi): protoc names modules after the proto
# path, so we generate into a scratch dir and rewrite the `accord.` imports to `accord.proto.`. The
# descriptors keep their canonical file names (accord/<area>/v1/*.proto), so gRPC reflection and any
# cross-proto imports see the same names as in proto/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${root}/.venv/bin/python"
target="${root}/libs/accord/src/accord/proto"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

cd "${root}"
mapfile -t protos < <(find proto -name '*.proto' | LC_ALL=C sort)
if [[ ${#protos[@]} -eq 0 ]]; then
  echo "no .proto files under proto/" >&2
  exit 1
fi

# `python -m grpc_tools.protoc` adds the bundled well-known types (google/protobuf/*.proto) to the path.
"${python}" -m grpc_tools.protoc -I proto \
  --python_out="${scratch}" --pyi_out="${scratch}" --grpc_python_out="${scratch}" \
  "${protos[@]}"

find "${scratch}" -name '*.py' -o -name '*.pyi' | while read -r file; do
  sed -i -E 's/^(from|import) accord\./\1 accord.proto./' "${file}"
done

rm -rf "${target}"
mkdir -p "${target}"
cp -R "${scratch}/accord/." "${target}/"
cat > "${target}/__init__.py" <<'PY'
"""Generated protobuf and gRPC code for Accord's control-plane APIs (see proto/ and scripts/gen-proto.sh)."""
PY
# Every generated folder is a regular package, so `accord.proto.<area>.v1` imports resolve everywhere.
find "${target}" -mindepth 1 -type d | while read -r dir; do
  [[ -f "${dir}/__init__.py" ]] || : > "${dir}/__init__.py"
done
echo "generated: $(cd "${target}" && find . -name '*_pb2*.py' | LC_ALL=C sort | tr '\n' ' ')"
