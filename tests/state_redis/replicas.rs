//! What replicas rely on: stores opened apart on one Redis share everything, an outage fails
//! each call within the timeout and heals without reopening, and the cluster and sentinel
//! topologies reach the same data.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use relayguard::limits::{BanRule, Event, Millis};
use relayguard::state::redis::RedisTopology;
use relayguard::state::{now, PostscreenPass, StateError};

use super::support::redis::{RedisCluster, RedisServer};
use super::{connect, fail, key, single, store, store_within, SLOW_TIMEOUT, TIMEOUT};

#[tokio::test]
async fn two_stores_on_one_redis_see_each_others_counts_and_bans() {
    let redis = RedisServer::start();
    let (a, b) = (single(&redis), single(&redis));
    let c = key("192.0.2.9");
    let unit = Duration::from_secs(60);
    assert_eq!(a.hit("smtp", Event::Auth, c, now(), unit).await.unwrap(), 1);
    assert_eq!(b.hit("smtp", Event::Auth, c, now(), unit).await.unwrap(), 2);
    let t = now();
    a.connect(connect("smtp", "192.0.2.9", 1, t)).await.unwrap();
    let v = b.connect(connect("smtp", "192.0.2.9", 2, t)).await.unwrap();
    assert_eq!((v.concurrent, v.rate), (2, 2));
    a.disconnect("smtp", c, 1).await;
    let v = b.connect(connect("smtp", "192.0.2.9", 3, t)).await.unwrap();
    assert_eq!(v.concurrent, 2, "a's goodbye counted on b");

    let rule = BanRule::default();
    for d in 0..3 {
        assert_eq!(fail(&a, c, d, 1, t, &rule).await.banned, None);
    }
    assert!(
        fail(&b, c, 2, 1, t, &rule).await.count.repeated,
        "a saw it first"
    );
    assert_eq!(fail(&b, c, 3, 1, t, &rule).await.banned, None);
    let ban = fail(&b, c, 4, 1, t, &rule)
        .await
        .banned
        .expect("5 across both");
    assert_eq!(a.ban_of(c, t).await.unwrap(), Some(ban.clone()));
    assert_eq!(a.bans(t).await.unwrap(), vec![(c, ban)]);
    assert!(a.remove_ban(c, t).await.unwrap());
    assert_eq!(b.ban_of(c, t).await.unwrap(), None);
    assert_eq!(b.bans(t).await.unwrap(), vec![]);
}

/// Every call while Redis is away fails within the timeout; once it is back the same store
/// answers again, without being reopened.
#[tokio::test]
async fn an_outage_fails_fast_and_the_same_store_recovers() {
    let mut redis = RedisServer::start();
    let s = single(&redis);
    let c = key("192.0.2.10");
    let unit = Duration::from_secs(60);
    assert_eq!(
        s.hit("smtp", Event::Message, c, now(), unit).await.unwrap(),
        1
    );
    redis.stop();
    let bound = TIMEOUT + Duration::from_millis(300);
    for _ in 0..3 {
        let started = Instant::now();
        let r = s.hit("smtp", Event::Message, c, now(), unit).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
        let started = Instant::now();
        assert!(s.ban_of(c, now()).await.is_err());
        assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let count = loop {
        match s.hit("smtp", Event::Message, c, now(), unit).await {
            Ok(n) => break n,
            Err(e) => assert!(Instant::now() < deadline, "still failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(count, 1, "the restarted Redis is empty");
    assert_eq!(s.ban_of(c, now()).await.unwrap(), None);
}

#[tokio::test]
async fn open_succeeds_while_redis_is_down_and_connects_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let s = single(&redis);
    let started = Instant::now();
    assert!(s.bans(now()).await.is_err());
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(300));
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.bans(now()).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing answers on this port at all.
    let nowhere = store(RedisTopology::Single("redis://127.0.0.1:1/".into()));
    assert!(nowhere
        .hit("smtp", Event::Auth, key("192.0.2.1"), now(), TIMEOUT)
        .await
        .is_err());
}

/// On a cluster every call touches one slot (the client's hash tag); the ban index, in a slot
/// of its own, follows in a second call. A key outside the tag would fail with CROSSSLOT.
#[tokio::test]
async fn a_cluster_keeps_each_clients_keys_in_one_slot() {
    let cluster = RedisCluster::start();
    let s = store_within(RedisTopology::Cluster(cluster.urls()), SLOW_TIMEOUT);
    let t = now();
    let rule = BanRule::default();
    let mut bans = Vec::new();
    for (i, client) in ["192.0.2.40", "192.0.2.41", "2001:db8:9::1"]
        .iter()
        .enumerate()
    {
        let c = key(client);
        let v = s.connect(connect("smtp", client, 1, t)).await.unwrap();
        assert_eq!((v.concurrent, v.rate), (1, 1));
        assert_eq!(
            s.hit("smtp", Event::Message, c, t, Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        let mut last = None;
        for d in 0..5 {
            last = fail(&s, c, d, 1, Millis(t.0 + i as u64), &rule)
                .await
                .banned;
        }
        bans.push((c, last.expect("banned")));
    }
    assert_eq!(s.bans(t).await.unwrap(), bans);
    assert!(s.remove_ban(bans[0].0, t).await.unwrap());
    assert_eq!(s.bans(t).await.unwrap(), bans[1..].to_vec());
    let addr: IpAddr = "192.0.2.42".parse().unwrap();
    let pass = PostscreenPass {
        pregreet: Some(Millis(t.0 + 60_000)),
        ..PostscreenPass::default()
    };
    s.postscreen_put(addr, pass, t).await.unwrap();
    assert_eq!(s.postscreen_get(addr, t).await.unwrap(), Some(pass));
}

#[tokio::test]
async fn a_master_found_through_a_sentinel_is_used() {
    let master = RedisServer::start();
    let sentinel = RedisServer::sentinel(master.port, "rgmaster");
    let s = store_within(
        RedisTopology::Sentinel {
            sentinels: vec![sentinel.url()],
            service: "rgmaster".into(),
        },
        SLOW_TIMEOUT,
    );
    let c = key("192.0.2.50");
    let unit = Duration::from_secs(60);
    assert_eq!(s.hit("smtp", Event::Auth, c, now(), unit).await.unwrap(), 1);
    assert_eq!(
        master.cli(&["get", "rgtest:{192.0.2.50}:rate:auth:smtp"]),
        "1"
    );
    let unknown = store(RedisTopology::Sentinel {
        sentinels: vec![sentinel.url()],
        service: "nosuchmaster".into(),
    });
    let r = unknown.hit("smtp", Event::Auth, c, now(), unit).await;
    assert!(matches!(r, Err(StateError::Unavailable(_))), "{r:?}");
}
