//! The collectors that route entries find each other through the store: each writes its
//! member file, every one lists the same members, one that stops removes its file, and one
//! that stops writing it drops out once the file is older than the members' age limit.

use std::sync::Arc;

use meshscope_storage::{COLLECTOR_MEMBER_MAX_AGE_MS, Clock, CollectorMember, ManualClock, Store};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::support::config_on;

fn member(writer: &str, address: &str) -> CollectorMember {
    CollectorMember {
        writer: writer.to_owned(),
        grpc_address: address.to_owned(),
    }
}

#[tokio::test]
async fn collectors_list_each_other_and_drop_out_when_they_stop_or_go_quiet() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // The in-memory store stamps objects with the real time; the readers' clock starts
    // there too.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Store::open(config_on(&shared, &clock, dirs[0].path(), "collector-a"))
        .await
        .unwrap();
    let b = Store::open(config_on(&shared, &clock, dirs[1].path(), "collector-b"))
        .await
        .unwrap();
    assert!(a.collector_members().await.unwrap().is_empty());

    a.publish_collector_member("10.0.0.1:11800").await.unwrap();
    b.publish_collector_member("10.0.0.2:11800").await.unwrap();
    let both = vec![
        member("collector-a", "10.0.0.1:11800"),
        member("collector-b", "10.0.0.2:11800"),
    ];
    assert_eq!(a.collector_members().await.unwrap(), both);
    assert_eq!(b.collector_members().await.unwrap(), both);

    // A new address replaces the old one.
    b.publish_collector_member("10.0.0.9:11800").await.unwrap();
    assert_eq!(
        a.collector_members().await.unwrap()[1],
        member("collector-b", "10.0.0.9:11800")
    );

    // One stops cleanly: gone at once.
    b.withdraw_collector_member().await.unwrap();
    assert_eq!(
        a.collector_members().await.unwrap(),
        vec![member("collector-a", "10.0.0.1:11800")]
    );
    // Withdrawing twice is no error.
    b.withdraw_collector_member().await.unwrap();

    // The other goes quiet: listed until its file is older than the limit.
    clock.set(clock.now_ms() + COLLECTOR_MEMBER_MAX_AGE_MS - 2_000);
    assert_eq!(a.collector_members().await.unwrap().len(), 1);
    clock.set(clock.now_ms() + 5_000);
    assert!(b.collector_members().await.unwrap().is_empty());

    // A store opened without a writer id (a query node) publishes nothing.
    let reader_dir = tempfile::tempdir().unwrap();
    let reader = Store::open(config_on(&shared, &clock, reader_dir.path(), ""))
        .await
        .unwrap();
    reader
        .publish_collector_member("10.0.0.3:11800")
        .await
        .unwrap();
    assert!(reader.collector_members().await.unwrap().is_empty());
}
