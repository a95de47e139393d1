//! The Redis state store against a real redis-server on loopback: the same semantics as the
//! in-process store, shared by every store opened on the same Redis (as replicas are), and
//! failing fast, then recovering on its own, when Redis goes away and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "state_redis/replicas.rs"]
mod replicas;
mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use relayguard::limits::{Ban, BanRule, ClientKey, Event, Millis, Trigger};
use relayguard::state::redis::{RedisSettings, RedisTopology};
use relayguard::state::{
    now, BackendSettings, ConnectQuery, FailMode, FailureOutcome, FailureQuery, PostscreenPass,
    StateError, StateSettings, StateStore,
};
use support::redis::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(400);
/// A sentinel's or a cluster's first call connects to several servers in turn: on a loaded
/// machine that takes longer than one round trip should.
const SLOW_TIMEOUT: Duration = Duration::from_secs(3);

fn store(topology: RedisTopology) -> StateStore {
    store_within(topology, TIMEOUT)
}

fn store_within(topology: RedisTopology, timeout: Duration) -> StateStore {
    StateStore::open(&StateSettings {
        backend: BackendSettings::Redis(RedisSettings {
            topology,
            prefix: "rgtest:".into(),
            timeout,
        }),
        fail_mode: FailMode::Open,
        ipv6_prefix: 64,
    })
    .expect("opening never waits for Redis")
}

fn single(redis: &RedisServer) -> StateStore {
    store(RedisTopology::Single(redis.url()))
}

fn key(s: &str) -> ClientKey {
    ClientKey::parse(s, 64).unwrap()
}

fn connect<'a>(listener: &'a str, client: &str, session: u64, at: Millis) -> ConnectQuery<'a> {
    ConnectQuery {
        listener,
        key: key(client),
        session,
        now: at,
        lifetime: Duration::from_secs(3600),
        count_concurrent: true,
        rate_unit: Some(Duration::from_secs(60)),
        check_ban: true,
    }
}

async fn fail(
    s: &StateStore,
    client: ClientKey,
    digest: u32,
    user: u32,
    at: Millis,
    rule: &BanRule,
) -> FailureOutcome {
    s.record_failure(FailureQuery {
        key: client,
        trigger: Trigger::Auth,
        digest,
        user,
        now: at,
        rule,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn rate_windows_count_from_the_first_event_and_expire() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let c = key("192.0.2.1");
    let unit = Duration::from_secs(1);
    let hit = |listener: &'static str, event| {
        let s = &s;
        async move { s.hit(listener, event, c, now(), unit).await.unwrap() }
    };
    let first = Instant::now();
    assert_eq!(hit("smtp", Event::Message).await, 1);
    assert_eq!(hit("smtp", Event::Message).await, 2);
    assert_eq!(hit("submission", Event::Message).await, 1, "per listener");
    assert_eq!(hit("smtp", Event::Recipient).await, 1, "per event");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(hit("smtp", Event::Message).await, 3);
    // The window runs from the first event: a later one does not push its end back.
    let left: i64 = redis
        .cli(&["pttl", "rgtest:{192.0.2.1}:rate:mail:smtp"])
        .parse()
        .unwrap();
    assert!(
        (-2..=650).contains(&left),
        "pttl {left} after 400 ms of 1 s"
    );
    let wait = Duration::from_millis(1100).saturating_sub(first.elapsed());
    tokio::time::sleep(wait).await;
    assert_eq!(hit("smtp", Event::Message).await, 1, "a new window");
}

#[tokio::test]
async fn concurrency_counts_sessions_and_forgets_the_dead_after_their_lifetime() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let t = now();
    let v = s.connect(connect("smtp", "192.0.2.2", 1, t)).await.unwrap();
    assert_eq!((v.concurrent, v.rate, v.ban), (1, 1, None));
    let v = s.connect(connect("smtp", "192.0.2.2", 2, t)).await.unwrap();
    assert_eq!((v.concurrent, v.rate), (2, 2));
    let other = s.connect(connect("submission", "192.0.2.2", 3, t)).await;
    assert_eq!(other.unwrap().concurrent, 1, "per listener");
    s.disconnect("smtp", key("192.0.2.2"), 1).await;
    let v = s.connect(connect("smtp", "192.0.2.2", 4, t)).await.unwrap();
    assert_eq!((v.concurrent, v.rate), (2, 3));

    // Sessions of a replica that died without saying goodbye stop counting after their
    // lifetime (the store judges by the `now` it is given).
    let short = |session, at| ConnectQuery {
        lifetime: Duration::from_secs(1),
        ..connect("smtp", "192.0.2.3", session, at)
    };
    assert_eq!(s.connect(short(10, t)).await.unwrap().concurrent, 1);
    assert_eq!(s.connect(short(11, t)).await.unwrap().concurrent, 2);
    let later = s.connect(short(12, Millis(t.0 + 1500))).await.unwrap();
    assert_eq!(later.concurrent, 1, "only the new session is left");

    let uncounted = ConnectQuery {
        count_concurrent: false,
        rate_unit: None,
        ..connect("smtp", "192.0.2.2", 5, t)
    };
    let v = s.connect(uncounted).await.unwrap();
    assert_eq!((v.concurrent, v.rate), (0, 0));
}

#[tokio::test]
async fn five_distinct_failures_ban_while_a_repeated_digest_counts_once() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let rule = BanRule::default();
    let attacker = key("198.51.100.66");
    let t = now();
    for d in 1..=3 {
        assert_eq!(fail(&s, attacker, d, 7, t, &rule).await.banned, None);
    }
    let other_user = fail(&s, attacker, 4, 8, t, &rule).await;
    assert_eq!((other_user.count.client, other_user.count.user), (4, 1));
    let again = fail(&s, attacker, 4, 8, Millis(t.0 + 1), &rule).await;
    assert!(again.count.repeated, "the same credentials again");
    assert_eq!((again.count.client, again.banned), (4, None));
    let fifth = fail(&s, attacker, 5, 7, Millis(t.0 + 2), &rule).await;
    assert_eq!((fifth.count.client, fifth.count.user), (5, 4));
    let ban = fifth.banned.expect("the fifth distinct failure bans");
    assert_eq!(
        (ban.offence, ban.since, ban.until),
        (1, Millis(t.0 + 2), Millis(t.0 + 2 + 600_000))
    );
    assert_eq!(ban.reason, "5 failed AUTH attempts");
    let at = Millis(t.0 + 3);
    assert_eq!(s.ban_of(attacker, at).await.unwrap(), Some(ban.clone()));
    assert_eq!(s.ban_of(key("198.51.100.67"), at).await.unwrap(), None);
    let seen = s.connect(connect("smtp", "198.51.100.66", 1, at)).await;
    assert_eq!(seen.unwrap().ban, Some(ban.clone()));
    assert_eq!(s.bans(at).await.unwrap(), vec![(attacker, ban.clone())]);
    assert_eq!(s.ban_of(attacker, ban.until).await.unwrap(), None, "ended");
    // Failures while banned do not ban again; the window started afresh at the ban.
    let during = fail(&s, attacker, 6, 7, Millis(t.0 + 4), &rule).await;
    assert_eq!((during.count.client, during.banned), (1, None));
}

#[tokio::test]
async fn a_second_ban_within_the_repeat_window_is_twice_as_long() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let rule = BanRule {
        ban_time: Duration::from_secs(1),
        max_ban_time: Duration::from_secs(3),
        ..BanRule::default()
    };
    let c = key("198.51.100.70");
    let t = now();
    let mut bans = Vec::new();
    for round in 0..3u32 {
        // Each round starts after the previous ban has ended.
        let at = Millis(t.0 + u64::from(round) * 10_000);
        let mut last = None;
        for d in 0..5 {
            last = fail(&s, c, 100 * round + d, 1, at, &rule).await.banned;
        }
        bans.push(last.expect("five failures ban"));
    }
    let got: Vec<_> = bans
        .iter()
        .map(|b| (b.offence, b.until.0 - b.since.0))
        .collect();
    assert_eq!(
        got,
        vec![(1, 1000), (2, 2000), (3, 3000)],
        "doubling, capped"
    );
}

#[tokio::test]
async fn bans_lists_and_remove_ban_lifts_but_keeps_the_history() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let rule = BanRule::default();
    let t = now();
    let v4 = key("203.0.113.5");
    let v6 = key("2001:db8:1:2::77");
    for d in 0..5 {
        fail(&s, v4, d, 1, t, &rule).await;
    }
    let admin = Ban {
        since: t,
        until: Millis(t.0 + 60_000),
        offence: 3,
        reason: "added by admin".into(),
    };
    s.add_ban(v6, admin.clone()).await.unwrap();
    let listed = s.bans(t).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(k, b)| (*k, b.offence))
            .collect::<Vec<_>>(),
        vec![(v6, 3), (v4, 1)],
        "soonest to end first"
    );
    assert_eq!(listed[0].1, admin);
    assert_eq!(listed[0].0.to_string(), "2001:db8:1:2::/64");

    assert!(s.remove_ban(v4, t).await.unwrap());
    assert_eq!(s.ban_of(v4, t).await.unwrap(), None);
    assert!(!s.remove_ban(v4, t).await.unwrap(), "nothing left to lift");
    assert_eq!(s.bans(t).await.unwrap(), vec![(v6, admin)]);
    // The failures went with the ban, the offence count stayed: four more do not ban, the
    // fifth bans as a repeat.
    for d in 10..14 {
        assert_eq!(fail(&s, v4, d, 1, t, &rule).await.banned, None);
    }
    let again = fail(&s, v4, 14, 1, t, &rule).await.banned.unwrap();
    assert_eq!((again.offence, again.until), (2, Millis(t.0 + 1_200_000)));
    // An admin's ban on a repeat offender keeps the larger count for the next one.
    s.remove_ban(v6, t).await.unwrap();
    for d in 0..5 {
        fail(&s, v6, d, 1, t, &rule).await;
    }
    assert_eq!(s.ban_of(v6, t).await.unwrap().unwrap().offence, 4);
}

#[tokio::test]
async fn postscreen_results_live_until_their_last_ttl() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let addr: IpAddr = "192.0.2.5".parse().unwrap();
    let t = now();
    let pass = PostscreenPass {
        pregreet: Some(Millis(t.0 + 1000)),
        dnsbl: Some(Millis(t.0 + 500)),
        ..PostscreenPass::default()
    };
    s.postscreen_put(addr, pass, t).await.unwrap();
    assert_eq!(s.postscreen_get(addr, t).await.unwrap(), Some(pass));
    assert_eq!(
        s.postscreen_get(addr, Millis(t.0 + 999)).await.unwrap(),
        Some(pass)
    );
    assert_eq!(
        s.postscreen_get(addr, Millis(t.0 + 1000)).await.unwrap(),
        None
    );
    let left: i64 = redis.cli(&["pttl", "rgtest:ps:192.0.2.5"]).parse().unwrap();
    assert!(
        (1..=1000).contains(&left),
        "kept until the last ttl: {left}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        redis.cli(&["exists", "rgtest:ps:192.0.2.5"]),
        "0",
        "Redis forgot it"
    );

    let other: IpAddr = "2001:db8::5".parse().unwrap();
    s.postscreen_put(other, pass, now()).await.unwrap();
    s.postscreen_put(other, PostscreenPass::default(), now())
        .await
        .unwrap();
    assert_eq!(
        s.postscreen_get(other, now()).await.unwrap(),
        None,
        "nothing passed"
    );
}

/// Only the ban index is kept without a TTL (it is pruned by the end of each ban); every other
/// key goes away by itself.
#[tokio::test]
async fn every_key_follows_the_schema_and_expires() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let t = now();
    s.connect(connect("smtp", "2001:db8::1", 1, t))
        .await
        .unwrap();
    s.hit(
        "smtp",
        Event::Recipient,
        key("2001:db8::1"),
        t,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    for d in 0..5 {
        fail(&s, key("192.0.2.20"), d, 1, t, &BanRule::default()).await;
    }
    fail(&s, key("192.0.2.21"), 1, 1, t, &BanRule::default()).await;
    let pass = PostscreenPass {
        dnsbl: Some(Millis(t.0 + 5000)),
        ..PostscreenPass::default()
    };
    s.postscreen_put("192.0.2.22".parse().unwrap(), pass, t)
        .await
        .unwrap();
    let mut keys: Vec<String> = redis
        .cli(&["--raw", "keys", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "rgtest:ps:192.0.2.22",
            "rgtest:{192.0.2.20}:ban",
            "rgtest:{192.0.2.20}:offences",
            "rgtest:{192.0.2.21}:fail:auth",
            "rgtest:{2001:db8::/64}:conc:smtp",
            "rgtest:{2001:db8::/64}:rate:conn:smtp",
            "rgtest:{2001:db8::/64}:rate:rcpt:smtp",
            "rgtest:{bans}:ends",
            "rgtest:{bans}:list",
        ]
    );
    for k in &keys {
        let ttl: i64 = redis.cli(&["pttl", k]).parse().unwrap();
        if k.contains("{bans}") {
            assert_eq!(ttl, -1, "{k}");
        } else {
            assert!(ttl > 0, "{k} has no TTL: {ttl}");
        }
    }
}

/// Times past what Lua's doubles and PEXPIRE hold (a ban "for ever") are kept as the latest
/// they can hold, not refused.
#[tokio::test]
async fn a_ban_for_ever_is_kept() {
    let redis = RedisServer::start();
    let s = single(&redis);
    let t = now();
    let ever = Ban {
        since: t,
        until: t.after(Duration::MAX),
        offence: 1,
        reason: "added by admin".into(),
    };
    s.add_ban(key("192.0.2.60"), ever).await.unwrap();
    let kept = s.ban_of(key("192.0.2.60"), t).await.unwrap().unwrap();
    assert_eq!(kept.until, Millis((1 << 53) - 1));
    assert_eq!(s.bans(t).await.unwrap().len(), 1);
}

#[tokio::test]
async fn garbage_in_redis_is_corrupt_not_a_panic() {
    let redis = RedisServer::start();
    let s = single(&redis);
    redis.cli(&["set", "rgtest:{192.0.2.30}:ban", "x"]);
    redis.cli(&["hset", "rgtest:{192.0.2.31}:ban", "till", "soon"]);
    redis.cli(&["set", "rgtest:ps:192.0.2.32", "{not json"]);
    let r = s.ban_of(key("192.0.2.30"), now()).await;
    assert!(matches!(r, Err(StateError::Corrupt(_))), "{r:?}");
    let r = s.ban_of(key("192.0.2.31"), now()).await;
    assert!(matches!(r, Err(StateError::Corrupt(_))), "{r:?}");
    let r = s.postscreen_get("192.0.2.32".parse().unwrap(), now()).await;
    assert!(matches!(r, Err(StateError::Corrupt(_))), "{r:?}");
    // The store still answers for everyone else.
    assert_eq!(s.ban_of(key("192.0.2.33"), now()).await.unwrap(), None);
}

/// Sessions run on a multi-threaded runtime: the store's futures must be Send.
#[test]
fn the_stores_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let s = StateStore::in_memory();
    let rule = BanRule::default();
    let c = key("192.0.2.1");
    send(&s.connect(connect("smtp", "192.0.2.1", 1, Millis(0))));
    send(&s.hit("smtp", Event::Auth, c, Millis(0), TIMEOUT));
    send(&s.record_failure(FailureQuery {
        key: c,
        trigger: Trigger::Auth,
        digest: 1,
        user: 1,
        now: Millis(0),
        rule: &rule,
    }));
    send(&s.bans(Millis(0)));
    send(&s.remove_ban(c, Millis(0)));
    send(&s.postscreen_get("192.0.2.1".parse().unwrap(), Millis(0)));
}
