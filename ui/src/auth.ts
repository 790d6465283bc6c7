// Bearer tokens for the API. When the server answers 401, the dashboard asks for a token
// once, keeps it in sessionStorage (for this tab, until it closes) and sends it as
// `Authorization: Bearer`. A refused token is forgotten, so the next load asks again; a
// dismissed question is not asked again until the page is reloaded.

export const TOKEN_KEY = "meshscope.apiToken";

export interface AuthDeps {
  fetch: (url: string, init: RequestInit) => Promise<Response>;
  storage: Pick<Storage, "getItem" | "setItem" | "removeItem">;
  /// Asks the person for a token; null or "" when they dismiss the question.
  ask: (message: string) => string | null;
}

export type ApiFetch = (url: string, init?: RequestInit) => Promise<Response>;

function withToken(init: RequestInit, token: string | null): RequestInit {
  if (!token) return init;
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  return { ...init, headers };
}

/// A fetch that adds the kept token and, on a 401, asks for one and tries once more.
/// Requests refused at the same time share one question.
export function createApiFetch(deps: AuthDeps): ApiFetch {
  let question: Promise<string | null> | null = null;
  let dismissed = false;

  const askOnce = (): Promise<string | null> => {
    question ??= Promise.resolve().then(() => {
      const answer = deps.ask("This meshscope needs an API token:")?.trim() ?? "";
      question = null;
      if (!answer) {
        dismissed = true;
        return null;
      }
      deps.storage.setItem(TOKEN_KEY, answer);
      return answer;
    });
    return question;
  };

  return async (url, init = {}) => {
    const kept = deps.storage.getItem(TOKEN_KEY);
    const first = await deps.fetch(url, withToken(init, kept));
    if (first.status !== 401) return first;
    if (kept) deps.storage.removeItem(TOKEN_KEY);
    if (dismissed) return first;
    const token = await askOnce();
    if (!token) return first;
    const second = await deps.fetch(url, withToken(init, token));
    if (second.status === 401) deps.storage.removeItem(TOKEN_KEY);
    return second;
  };
}

let browserFetch: ApiFetch | null = null;

/// The dashboard's fetch for API calls, over the browser's fetch, sessionStorage and prompt.
export function apiFetch(url: string, init?: RequestInit): Promise<Response> {
  browserFetch ??= createApiFetch({
    fetch: (u, i) => window.fetch(u, i),
    storage: window.sessionStorage,
    ask: (message) => window.prompt(message),
  });
  return browserFetch(url, init);
}
