//! The data plane in-process: where exactly verification stops when a provider sends bad
//! bytes.

use futures::StreamExt;
use iroh_blobs::{api::blobs::BlobStatus, get::GetError};
use streamgate_node::{actors::data_plane::DataPlane, config::DataPlaneConfig};
use streamgate_swarm::identity::Identity;
use streamgate_tests::test_bytes;

const GROUP: u64 = 16 * 1024;
/// The stream offset of the byte the provider flips.
const CORRUPT_AT: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_fail_at_the_first_bad_group_and_earlier_groups_are_kept() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().expect("tempdir");
    let config = DataPlaneConfig {
        bind: "127.0.0.1:0".parse().expect("addr"),
        ..DataPlaneConfig::default()
    };
    let provider_id = Identity::create(&root.path().join("p")).expect("key");
    let provider = DataPlane::start(
        &config,
        &provider_id,
        &root.path().join("p/blobs"),
        Vec::new(),
        Some(CORRUPT_AT),
    )
    .await
    .expect("provider");
    let fetcher_id = Identity::create(&root.path().join("f")).expect("key");
    let fetcher = DataPlane::start(
        &config,
        &fetcher_id,
        &root.path().join("f/blobs"),
        Vec::new(),
        None,
    )
    .await
    .expect("fetcher");

    let payload = test_bytes(4 * 1024 * 1024, 9);
    let hash = provider
        .store()
        .add_slice(&payload)
        .await
        .expect("add")
        .hash;
    fetcher.learn(&provider.node_record(0).sign(&provider_id.signing_key()));
    let conn = fetcher.connect(provider.node_id()).await.expect("connect");

    let error = fetcher
        .store()
        .remote()
        .fetch((*conn).clone(), hash)
        .await
        .expect_err("a corrupt stream must not verify");
    assert!(
        matches!(error, GetError::Decode { .. }) && error.to_string().contains("hash mismatch"),
        "expected a hash mismatch, got {error}"
    );

    // What was kept: exactly the whole groups before the flipped byte, and nothing after.
    // The fetch returns its error as soon as verification fails, while the store may still
    // be writing groups verified before it, so the kept prefix is followed as it grows.
    let mut updates = std::pin::pin!(
        fetcher
            .store()
            .blobs()
            .observe(hash)
            .stream()
            .await
            .expect("observe")
    );
    let mut kept = 0;
    let settled = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(bitfield) = updates.next().await {
            kept = kept_prefix(&bitfield.ranges);
            if CORRUPT_AT - kept <= GROUP + tree_overhead(kept) {
                return;
            }
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the kept prefix stopped growing {} bytes before the bad byte",
        CORRUPT_AT - kept
    );
    let kept = kept_prefix(
        &fetcher
            .store()
            .blobs()
            .observe(hash)
            .await
            .expect("observe")
            .ranges,
    );
    assert!(
        CORRUPT_AT - kept <= GROUP + tree_overhead(kept),
        "verification stopped {} bytes before the bad byte; expected it within one group",
        CORRUPT_AT - kept
    );
    let prefix = fetcher
        .store()
        .blobs()
        .export_ranges(hash, 0..kept)
        .concatenate()
        .await
        .expect("read kept bytes");
    assert_eq!(&prefix[..], &payload[..kept as usize]);
    assert!(matches!(
        fetcher.store().blobs().status(hash).await.expect("status"),
        BlobStatus::Partial { .. }
    ));

    fetcher.shutdown().await;
    provider.shutdown().await;
}

/// The length of the one verified prefix `ranges` holds, checked to be whole groups that
/// end before the corruption.
fn kept_prefix(ranges: &bao_tree::ChunkRanges) -> u64 {
    let boundaries = ranges.boundaries();
    assert!(
        boundaries.is_empty() || (boundaries.len() == 2 && boundaries[0].0 == 0),
        "kept bytes are not one prefix: {ranges:?}"
    );
    let kept = boundaries.get(1).map_or(0, |end| end.0 * 1024);
    assert_eq!(kept % GROUP, 0, "kept {kept} bytes, not whole groups");
    assert!(kept < CORRUPT_AT, "kept bytes past the corruption");
    kept
}

/// The stream carries 64 bytes of tree hashes per group as well as the data, so the flipped
/// stream offset lies within one group (plus that overhead) of the data kept.
fn tree_overhead(kept: u64) -> u64 {
    8 + 64 * (kept / GROUP + 32)
}
