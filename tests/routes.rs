//! The route cache (docs/architecture.md ROUTE-01..04): explicit targets resolved through a cache keyed
//! by `(target, source_group)`, with positive and negative entries, FIFO eviction, and
//! invalidation on placement updates.

#[path = "support/test_nodes.rs"]
mod test_nodes;

use stream_kernel::config::{self, RoutingCache};
use stream_kernel::graph::{Graph, MessageType, NodeError};
use stream_kernel::runtime::routes::{Location, RouteCacheCounters, Routes};

/// The routing table of `ticker -> pass -> router -> record` with the given cache settings,
/// serving group 1 of 2 (nodes after `pass` live in group 1).
fn table(cache: RoutingCache) -> Routes {
    let yaml = r#"
version: 1
scenario: {name: routes}
pipeline: {nodes: [ticker, pass, router, record]}
adapters:
  sink: {kind: file, path: /dev/null}
"#;
    let registry = test_nodes::registry();
    let loaded = config::load_str(yaml, &registry).expect("valid config");
    let mut diag = config::reader::Diagnostics::default();
    let graph = Graph::check(&loaded.config, &registry, &mut diag).expect("graph");
    Routes::from_graph(&graph)
        .with_cache(cache)
        .with_groups(vec![0, 0, 1, 1], 1)
}

fn enabled(negative_cache: bool, max_entries: u64) -> RoutingCache {
    RoutingCache {
        enabled: true,
        negative_cache,
        max_entries,
    }
}

fn tick() -> MessageType {
    MessageType::of::<test_nodes::Tick>()
}

/// ROUTE-01: the first lookup of a known target misses and caches it; the second is a hit
/// answering the same placement.
#[test]
fn route_01_positive_hit() {
    let mut routes = table(enabled(true, 100));
    let first = routes.location_of("record");
    assert_eq!(first, Some(Location { node: 3, group: 1 }));
    assert_eq!(
        routes.cache_counters(),
        RouteCacheCounters {
            misses: 1,
            positive_entries: 1,
            ..Default::default()
        }
    );
    assert_eq!(routes.location_of("record"), first);
    assert_eq!(
        routes.resolve_named(2, "router", "record", tick()).ok(),
        Some(3)
    );
    let counters = routes.cache_counters();
    assert_eq!((counters.hits, counters.misses), (2, 1));
    assert_eq!(counters.positive_entries, 1);
}

/// ROUTE-02: an unknown target is a typed error naming the target and the emitting node; it is
/// cached as a negative entry, so the second lookup is a negative hit.
#[test]
fn route_02_negative_hit_and_typed_error() {
    let mut routes = table(enabled(true, 100));
    let error = routes
        .resolve_named(2, "router", "nowhere", tick())
        .expect_err("unknown target");
    match &error {
        NodeError::UnknownTarget { node, target } => {
            assert_eq!((node.as_str(), target.as_str()), ("router", "nowhere"));
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
    assert!(error.to_string().contains("router") && error.to_string().contains("nowhere"));
    assert!(
        routes
            .resolve_named(2, "router", "nowhere", tick())
            .is_err()
    );
    let counters = routes.cache_counters();
    assert_eq!(
        (counters.misses, counters.negative_hits, counters.hits),
        (1, 1, 0)
    );
    assert_eq!(
        (counters.negative_entries, counters.positive_entries),
        (1, 0)
    );

    // Without negative caching, every unknown lookup goes to the table.
    let mut routes = table(enabled(false, 100));
    for _ in 0..3 {
        assert_eq!(routes.location_of("nowhere"), None);
    }
    let counters = routes.cache_counters();
    assert_eq!((counters.misses, counters.negative_hits), (3, 0));
    assert_eq!(counters.negative_entries, 0);
}

/// ROUTE-03: a placement update bumps the generation and clears every entry; the next lookup
/// misses and sees the new placement.
#[test]
fn route_03_placement_update_invalidates() {
    let mut routes = table(enabled(true, 100));
    routes.location_of("record");
    routes.location_of("nowhere");
    let before = routes.cache_counters();
    assert_eq!((before.positive_entries, before.negative_entries), (1, 1));
    assert_eq!(before.generation, 0);

    routes.update_placement("record", 3);
    let after = routes.cache_counters();
    assert_eq!(after.generation, before.generation + 1);
    assert_eq!((after.positive_entries, after.negative_entries), (0, 0));
    assert_eq!(
        routes.location_of("record"),
        Some(Location { node: 3, group: 3 })
    );
    assert_eq!(routes.cache_counters().misses, before.misses + 1);
}

/// ROUTE-04: with the cache disabled every lookup is a miss and nothing is cached.
#[test]
fn route_04_disabled_cache_counts_misses_only() {
    let mut routes = table(RoutingCache {
        enabled: false,
        negative_cache: true,
        max_entries: 100,
    });
    for _ in 0..5 {
        assert_eq!(
            routes.location_of("record"),
            Some(Location { node: 3, group: 1 })
        );
        assert_eq!(routes.location_of("nowhere"), None);
    }
    assert_eq!(
        routes.cache_counters(),
        RouteCacheCounters {
            misses: 10,
            ..Default::default()
        }
    );
}

/// At `max_entries` the oldest entry goes first (FIFO), and the entry counters follow.
#[test]
fn route_cache_evicts_the_oldest_entry_at_max_entries() {
    let mut routes = table(enabled(true, 2));
    routes.location_of("pass");
    routes.location_of("router");
    routes.location_of("record"); // evicts `pass`
    let counters = routes.cache_counters();
    assert_eq!(counters.positive_entries, 2);
    routes.location_of("router"); // still cached
    routes.location_of("pass"); // evicted: a miss, which evicts `router`
    let counters = routes.cache_counters();
    assert_eq!((counters.hits, counters.misses), (1, 4));
    assert_eq!(counters.positive_entries, 2);
    routes.location_of("nowhere"); // negative entry evicts `record`
    let counters = routes.cache_counters();
    assert_eq!(
        (counters.positive_entries, counters.negative_entries),
        (1, 1)
    );
}

/// A target behind the emitting node, or of another type, is refused with a typed error.
#[test]
fn backward_and_mistyped_targets_are_typed_errors() {
    let mut routes = table(enabled(true, 100));
    assert!(matches!(
        routes.resolve_named(2, "router", "pass", tick()),
        Err(NodeError::UnknownTarget { .. })
    ));
    assert!(matches!(
        routes.resolve_named(2, "router", "record", MessageType::of::<u64>()),
        Err(NodeError::TargetTypeMismatch { .. })
    ));
}
