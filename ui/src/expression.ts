// Expressions that pick services and edges on the map, for hiding and highlighting:
//
//   errors > 5%            p95 > 200ms           rate >= 100         no mtls
//   protocol = tcp         ns = shop             ns != shop          name = backend
//   errors > 1% and p95 > 1s                     tcp or errors > 5%          retries > 0
//
// Terms are joined by `and` (or `&&`) and then by `or` (or `||`), `and` binding tighter.
// Figures: `errors` (share of calls: `5%` or `0.05`), `p50`/`p95`/`p99` (`200ms`, `1.5s`,
// a bare number is milliseconds), `rate` (calls a minute), `retries` (attempts beyond the
// first that an edge's caller made over the range). `mtls`, `no mtls` (`!mtls`),
// `tcp`, `http` stand alone. An edge is in a namespace when either end is. A term about edges
// only (mtls, protocol, retries) is false for a service, and a quiet element has no latency or error
// share, so figures compared with it are false. Nothing here touches the DOM.

/// What an expression is tested against: a service or an edge, with its figures.
export interface Subject {
  kind: "node" | "edge";
  name: string;
  namespaces: string[];
  calls: number;
  cpm: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  mtls?: boolean;
  protocol?: string;
  /// An edge's retries over the range.
  retries?: number;
}

export type Predicate = (s: Subject) => boolean;

const OPS = [">=", "<=", "!=", "==", ">", "<", "="] as const;
type Op = (typeof OPS)[number];

function compare(a: number, op: Op, b: number): boolean {
  switch (op) {
    case ">":
      return a > b;
    case ">=":
      return a >= b;
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case "!=":
      return a !== b;
    default:
      return a === b;
  }
}

function number(text: string, field: string, units: Record<string, number>, bare: number): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z%/]*)$/i.exec(text.trim());
  const scale = m && (m[2] === "" ? bare : units[m[2].toLowerCase()]);
  if (!m || scale == null) {
    throw new Error(`${field} needs a number${Object.keys(units).length ? ` (${Object.keys(units).join(", ")})` : ""}, not "${text}"`);
  }
  return Number(m[1]) * scale;
}

function term(text: string): Predicate {
  const t = text.trim().toLowerCase();
  if (t === "mtls") return (s) => s.kind === "edge" && s.mtls === true;
  if (t === "no mtls" || t === "!mtls" || t === "not mtls") return (s) => s.kind === "edge" && s.mtls === false;
  if (t === "tcp" || t === "http") return (s) => s.kind === "edge" && s.protocol === t;
  const m = /^([a-z0-9_]+)\s*(>=|<=|!=|==|>|<|=)\s*(.+)$/.exec(text.trim());
  if (!m) throw new Error(`cannot read "${text.trim()}": try errors > 5%, p95 > 200ms, no mtls, protocol = tcp, ns = shop`);
  const field = m[1].toLowerCase();
  const op = m[2] as Op;
  const value = m[3].trim();
  const equality = op === "=" || op === "==" || op === "!=";
  const textTest = (test: (s: Subject, v: string) => boolean): Predicate => {
    if (!equality) throw new Error(`${field} is compared with = or !=`);
    const v = value.toLowerCase();
    return op === "!=" ? (s) => !test(s, v) : (s) => test(s, v);
  };
  switch (field) {
    case "errors":
    case "error":
    case "err": {
      const v = number(value, field, { "%": 0.01 }, /^\s*(0|\d*\.\d+)\s*$/.test(value) ? 1 : 0.01);
      return (s) => s.calls > 0 && compare(s.error_rate, op, v);
    }
    case "p50":
    case "p95":
    case "p99": {
      const v = number(value, field, { ms: 1, s: 1000 }, 1);
      const key = `${field}_ms` as "p50_ms" | "p95_ms" | "p99_ms";
      return (s) => s[key] != null && compare(s[key]!, op, v);
    }
    case "rate":
    case "rpm":
    case "cpm": {
      const v = number(value, field, { "/min": 1, "/s": 60 }, 1);
      return (s) => compare(s.cpm, op, v);
    }
    case "retries":
    case "retry": {
      const v = number(value, field, {}, 1);
      return (s) => s.kind === "edge" && compare(s.retries ?? 0, op, v);
    }
    case "protocol":
    case "proto":
      if (value.toLowerCase() !== "tcp" && value.toLowerCase() !== "http") throw new Error(`protocol is http or tcp, not "${value}"`);
      return textTest((s, v) => s.kind === "edge" && s.protocol === v);
    case "ns":
    case "namespace":
      return textTest((s, v) => s.namespaces.some((ns) => ns.toLowerCase() === v));
    case "name":
      return textTest((s, v) => s.name.toLowerCase() === v);
    case "mtls": {
      const yes = ["yes", "true", "1"].includes(value.toLowerCase());
      const no = ["no", "false", "0"].includes(value.toLowerCase());
      if (!equality || (!yes && !no)) throw new Error(`mtls is compared with = yes or = no`);
      const want = yes !== (op === "!=");
      return (s) => s.kind === "edge" && s.mtls === want;
    }
    default:
      throw new Error(`unknown field "${m[1]}": use errors, p50, p95, p99, rate, retries, mtls, protocol, ns or name`);
  }
}

/// The predicate an expression names; throws an Error that says what it could not read. An
/// empty expression is null: nothing picked.
export function parseExpression(text: string): Predicate | null {
  if (!text.trim()) return null;
  const clauses = text.split(/\bor\b|\|\|/i).map((clause) => {
    const terms = clause.split(/\band\b|&&/i).map((t) => {
      if (!t.trim()) throw new Error(`an "and" or "or" needs a term on each side`);
      return term(t);
    });
    return (s: Subject) => terms.every((p) => p(s));
  });
  return (s) => clauses.some((p) => p(s));
}
