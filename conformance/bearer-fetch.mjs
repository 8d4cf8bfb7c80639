// Preloaded into the MCP conformance suite (`node --import ./bearer-fetch.mjs`): adds the gateway's bearer
// token to every request the suite makes to the gateway, whether through `fetch` (the MCP SDK's client
// transport) or `undici.request` (the suite's raw HTTP checks). The suite has no option for request
// headers, and the gateway's /mcp refuses unauthenticated calls (401), as it must.
import { getGlobalDispatcher, setGlobalDispatcher } from "undici";

const token = process.env.ACCORD_CONFORMANCE_BEARER;
const origins = (process.env.ACCORD_CONFORMANCE_ORIGINS ?? "").split(",").filter(Boolean);
const ours = (url) => origins.some((origin) => url.startsWith(origin));

if (token && origins.length) {
  const original = globalThis.fetch;
  globalThis.fetch = (input, init = {}) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!ours(url)) return original(input, init);
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    if (!headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
    return original(input, { ...init, headers });
  };
  const withBearer = (dispatch) => (options, handler) => {
    if (!ours(String(options.origin ?? ""))) return dispatch(options, handler);
    const headers = Array.isArray(options.headers)
      ? [...options.headers, "authorization", `Bearer ${token}`]
      : { authorization: `Bearer ${token}`, ...(options.headers ?? {}) };
    return dispatch({ ...options, headers }, handler);
  };
  setGlobalDispatcher(getGlobalDispatcher().compose(withBearer));
}
