// Requests to meshscope's HTTP API.

import { apiFetch } from "./auth";

/// The JSON answer of a GET to `url`. An answer that is not a success is thrown as an
/// `Error` with the API's own message when it gave one, else the HTTP status.
export async function getJson<T>(url: string): Promise<T> {
  const res = await apiFetch(url, { headers: { accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error ?? `HTTP ${res.status}`);
  return body as T;
}
