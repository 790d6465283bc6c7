//! Endpoint names: `METHOD /path` with ids folded into `{id}`, so that a flood of unique
//! URLs becomes a handful of endpoints.

/// Longest path we keep segments of; past it the rest becomes `{…}`.
const MAX_SEGMENTS: usize = 12;
const MAX_SEGMENT_LEN: usize = 64;

/// `GET /orders/123/items?x=1` -> `GET /orders/{id}/items`.
pub fn endpoint_name(method: &str, path: &str) -> String {
    let mut out = String::with_capacity(method.len() + path.len() + 2);
    write_endpoint_name(&mut out, method, path);
    out
}

/// [`endpoint_name`] into a buffer the caller reuses, so that the hot path allocates once.
pub fn write_endpoint_name(out: &mut String, method: &str, path: &str) {
    out.clear();
    let path = path.split(['?', '#']).next().unwrap_or("");
    out.push_str(if method.is_empty() { "-" } else { method });
    out.push(' ');
    if path.is_empty() || !path.starts_with('/') {
        out.push('/');
        return;
    }
    for (index, segment) in path.split('/').skip(1).enumerate() {
        out.push('/');
        if index == MAX_SEGMENTS {
            out.push_str("{…}");
            break;
        }
        if segment.is_empty() {
            continue;
        }
        if is_id(segment) {
            out.push_str("{id}");
        } else {
            out.push_str(segment);
        }
    }
}

/// Numbers, UUIDs, long hex, and long mixed tokens are ids; words are not.
fn is_id(segment: &str) -> bool {
    if segment.len() > MAX_SEGMENT_LEN {
        return true;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(bytes) {
        return true;
    }
    let hex = bytes.iter().all(u8::is_ascii_hexdigit);
    if hex && bytes.len() >= 16 {
        return true;
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    // Tokens such as `a1b2c3d4e5` or `ord_8f3k2j9x`: long, and digits are a good part of them.
    bytes.len() >= 10 && digits * 3 >= bytes.len()
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fold_and_words_stay() {
        let cases = [
            ("GET", "/", "GET /"),
            ("GET", "", "GET /"),
            ("GET", "/fail", "GET /fail"),
            ("GET", "/orders/123", "GET /orders/{id}"),
            ("POST", "/orders/123/items?x=1", "POST /orders/{id}/items"),
            (
                "GET",
                "/u/550e8400-e29b-41d4-a716-446655440000/profile",
                "GET /u/{id}/profile",
            ),
            ("GET", "/blob/deadbeefdeadbeefdeadbeef", "GET /blob/{id}"),
            ("GET", "/api/v1/users", "GET /api/v1/users"),
            ("GET", "/orders/ord_8f3k2j9x71", "GET /orders/{id}"),
            ("GET", "/cafe", "GET /cafe"),
            ("", "/x", "- /x"),
            (
                "GET",
                "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o",
                "GET /a/b/c/d/e/f/g/h/i/j/k/l/{…}",
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(endpoint_name(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn huge_segments_become_ids() {
        let path = format!("/files/{}", "x".repeat(5000));
        assert_eq!(endpoint_name("GET", &path), "GET /files/{id}");
    }
}
