//! An entry's response flags as a bit set, and which of them are counted by kind.
//!
//! Bit `n` is field `n` of `envoy.data.accesslog.v3.ResponseFlags` (a bool, or for
//! `unauthorized_details` a message that is present when set). The kinds counted per row
//! are the store's [`meshscope_storage::response_flags`] ones.

use meshscope_proto::pb::envoy::data::accesslog::v3::ResponseFlags;
use meshscope_storage::Metrics;

/// `ResponseFlags` fields that mean the proxy got no answer from upstream (or gave up on
/// it); a client going away or an injected delay is not the server's failure.
pub(crate) const FAILURE_FLAGS: u32 = (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 16)
    | (1 << 17)
    | (1 << 20)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 27);

/// The field number of `unauthorized_details`, the one flag that is a message.
pub(crate) const UNAUTHORIZED_FIELD: u32 = 13;

/// Per field number, the kind it is counted under (an index into the store's
/// `RESPONSE_FLAG_CODES`), or `NOT_KEPT`: fields 1 to 12 are LH … RL in order, then
/// UAEX (13), DC (15), URX (16), SI (17).
const KIND_OF_FIELD: [u8; 32] = {
    let mut kinds = [NOT_KEPT; 32];
    let mut field = 1;
    while field <= 12 {
        kinds[field] = (field - 1) as u8;
        field += 1;
    }
    kinds[13] = 12;
    kinds[15] = 13;
    kinds[16] = 14;
    kinds[17] = 15;
    kinds
};
const NOT_KEPT: u8 = u8::MAX;

/// The bits of the fields counted by kind.
const KEPT: u32 = {
    let mut mask = 0u32;
    let mut field = 0;
    while field < 32 {
        if KIND_OF_FIELD[field] != NOT_KEPT {
            mask |= 1 << field;
        }
        field += 1;
    }
    mask
};

/// Adds one call's flags to a row's per-kind counts; nothing to do for most calls.
#[inline]
pub(crate) fn count_kinds(metrics: &mut Metrics, flags: u32) {
    let mut kept = flags & KEPT;
    while kept != 0 {
        let field = kept.trailing_zeros() as usize;
        *metrics
            .response_flags
            .get_mut(usize::from(KIND_OF_FIELD[field])) += 1;
        kept &= kept - 1;
    }
}

/// The bit set of a prost-decoded `ResponseFlags`, as the in-place reader makes it.
pub(crate) fn bits_of(f: &ResponseFlags) -> u32 {
    let set = [
        f.failed_local_healthcheck,
        f.no_healthy_upstream,
        f.upstream_request_timeout,
        f.local_reset,
        f.upstream_remote_reset,
        f.upstream_connection_failure,
        f.upstream_connection_termination,
        f.upstream_overflow,
        f.no_route_found,
        f.delay_injected,
        f.fault_injected,
        f.rate_limited,
        f.unauthorized_details.is_some(),
        f.rate_limit_service_error,
        f.downstream_connection_termination,
        f.upstream_retry_limit_exceeded,
        f.stream_idle_timeout,
        f.invalid_envoy_request_headers,
        f.downstream_protocol_error,
        f.upstream_max_stream_duration_reached,
        f.response_from_cache_filter,
        f.no_filter_config_found,
        f.duration_timeout,
        f.upstream_protocol_error,
        f.no_cluster_found,
        f.overload_manager,
        f.dns_resolution_failure,
        f.downstream_remote_reset,
    ];
    set.iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .fold(0, |bits, (i, _)| bits | 1 << (i + 1))
}

#[cfg(test)]
mod tests {
    use meshscope_storage::response_flags::RESPONSE_FLAG_CODES;

    use super::*;

    #[test]
    fn kept_fields_count_under_their_codes() {
        let flags = ResponseFlags {
            upstream_connection_failure: true,
            upstream_retry_limit_exceeded: true,
            unauthorized_details: Some(Default::default()),
            // Kept as a failure, not by kind.
            dns_resolution_failure: true,
            ..Default::default()
        };
        let bits = bits_of(&flags);
        assert_eq!(bits, 1 << 6 | 1 << 16 | 1 << 13 | 1 << 27);
        let mut metrics = Metrics::default();
        count_kinds(&mut metrics, bits);
        assert_eq!(
            metrics.response_flags.nonzero().collect::<Vec<_>>(),
            vec![("UF", 1), ("UAEX", 1), ("URX", 1)]
        );
        for (field, code) in [(1, "LH"), (12, "RL"), (15, "DC"), (17, "SI")] {
            assert_eq!(RESPONSE_FLAG_CODES[usize::from(KIND_OF_FIELD[field])], code);
        }
    }
}
