import { describe, expect, it } from "vitest";
import { createApiFetch, TOKEN_KEY, type AuthDeps } from "../src/auth";

/// A server that takes one token, a Map for sessionStorage, and scripted answers.
function harness(goodToken: string, answers: (string | null)[]) {
  const store = new Map<string, string>();
  const sent: (string | null)[] = [];
  let asked = 0;
  const deps: AuthDeps = {
    fetch: async (_url, init) => {
      const auth = new Headers(init.headers).get("authorization");
      sent.push(auth);
      const ok = auth === `Bearer ${goodToken}`;
      return new Response(ok ? "{}" : '{"error":"no"}', { status: ok ? 200 : 401 });
    },
    storage: {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    },
    ask: () => {
      asked += 1;
      return answers.shift() ?? null;
    },
  };
  return { api: createApiFetch(deps), store, sent, asked: () => asked };
}

describe("api tokens", () => {
  it("asks once on a 401, keeps the token for the session and sends it", async () => {
    const h = harness("s3cret", ["s3cret"]);
    const [a, b] = await Promise.all([h.api("/api/v1/topology"), h.api("/api/v1/services")]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(h.asked()).toBe(1);
    expect(h.store.get(TOKEN_KEY)).toBe("s3cret");
    const c = await h.api("/api/v1/proxies");
    expect(c.status).toBe(200);
    expect(h.asked()).toBe(1);
    expect(h.sent.at(-1)).toBe("Bearer s3cret");
  });

  it("forgets a refused token and stops asking once dismissed", async () => {
    const h = harness("s3cret", ["wrong", null]);
    expect((await h.api("/api/v1/topology")).status).toBe(401);
    expect(h.store.has(TOKEN_KEY)).toBe(false);
    expect((await h.api("/api/v1/topology")).status).toBe(401);
    expect((await h.api("/api/v1/topology")).status).toBe(401);
    expect(h.asked()).toBe(2);
  });

  it("sends nothing and asks nothing when the API is open", async () => {
    const store = new Map<string, string>();
    let asked = 0;
    const api = createApiFetch({
      fetch: async (_u, init) => {
        expect(new Headers(init.headers).has("authorization")).toBe(false);
        return new Response("{}", { status: 200 });
      },
      storage: {
        getItem: (k) => store.get(k) ?? null,
        setItem: (k, v) => void store.set(k, v),
        removeItem: (k) => void store.delete(k),
      },
      ask: () => {
        asked += 1;
        return null;
      },
    });
    expect((await api("/api/v1/topology")).status).toBe(200);
    expect(asked).toBe(0);
  });
});
