pub use envoy_types::pb;
