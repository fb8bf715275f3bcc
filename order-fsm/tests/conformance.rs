//! The conformance suite against the in-memory implementations.

use std::sync::Arc;
use std::time::Duration;

use order_fsm::testing::{self, Repeats};
use order_fsm::{CommandSource, MemoryQueue, MemorySink, MemoryStore};

#[tokio::test]
async fn memory_store_keeps_the_store_contract() {
    testing::store_conformance(&MemoryStore::new()).await;
}

#[tokio::test]
async fn memory_sink_keeps_the_sink_contract() {
    let sink = Arc::new(MemorySink::new());
    let reader = Arc::clone(&sink);
    testing::sink_conformance(sink.as_ref(), Repeats::Appended, move |id| {
        let held = reader
            .records()
            .into_iter()
            .filter(|r| r.order_id == id)
            .collect();
        async move { Ok(held) }
    })
    .await;
}

#[tokio::test]
async fn memory_source_keeps_the_source_contract() {
    let queue = MemoryQueue::new();
    let (producer, reader) = (queue.clone(), queue.clone());
    testing::source_conformance(
        move |commands| {
            producer.extend(commands);
            async { Ok(()) }
        },
        move || {
            let source: Box<dyn CommandSource> = Box::new(reader.subscribe());
            async move { Ok(source) }
        },
        Duration::from_millis(200),
    )
    .await;
}
