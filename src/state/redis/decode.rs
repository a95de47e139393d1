//! Replies turned back into the store's values; anything of the wrong shape is
//! [`StateError::Corrupt`], never a panic or a silent default.

use ::redis::{from_redis_value, FromRedisValue, Value};

use crate::limits::{Ban, ClientKey, Millis};
use crate::state::StateError;

fn corrupt(what: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(format!("redis: {what}"))
}

fn typed<T: FromRedisValue>(v: Value) -> Result<T, StateError> {
    from_redis_value(v).map_err(corrupt)
}

/// The next reply of a pipeline.
pub(super) fn next(replies: &mut impl Iterator<Item = Value>) -> Result<Value, StateError> {
    replies
        .next()
        .ok_or_else(|| corrupt("a pipeline answered fewer replies than it sent commands"))
}

/// A counter (INCR, ZCARD) as the limits take it.
pub(super) fn count(v: Value) -> Result<u32, StateError> {
    let n: i64 = typed(v)?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

fn number(text: &str, what: &str) -> Result<u64, StateError> {
    text.parse()
        .map_err(|_| corrupt(format_args!("{what} `{text}` is not a number")))
}

/// A ban hash read with HMGET since till offence reason: `None` for no ban or one ended at
/// `now`.
pub(super) fn ban(v: Value, now: Millis) -> Result<Option<Ban>, StateError> {
    let fields: Vec<Option<String>> = typed(v)?;
    let [since, till, offence, reason] = <[Option<String>; 4]>::try_from(fields)
        .map_err(|f| corrupt(format_args!("a ban read as {} fields", f.len())))?;
    let Some(till) = till else { return Ok(None) };
    let ban = Ban {
        since: Millis(number(since.as_deref().unwrap_or(""), "ban start")?),
        until: Millis(number(&till, "ban end")?),
        offence: number(offence.as_deref().unwrap_or(""), "offence")?
            .try_into()
            .unwrap_or(u32::MAX),
        reason: reason.unwrap_or_default(),
    };
    Ok(ban.is_active(now).then_some(ban))
}

/// One entry of the ban list: `since till offence reason`.
fn listed(client: &str, entry: &str) -> Result<(ClientKey, Ban), StateError> {
    let key = ClientKey::parse(client, 128)
        .ok_or_else(|| corrupt(format_args!("`{client}` in the ban list is not a client")))?;
    let mut parts = entry.splitn(4, ' ');
    let mut field = |what| number(parts.next().unwrap_or(""), what);
    let since = Millis(field("ban start")?);
    let until = Millis(field("ban end")?);
    let offence = field("offence")?.try_into().unwrap_or(u32::MAX);
    Ok((
        key,
        Ban {
            since,
            until,
            offence,
            reason: parts.next().unwrap_or("").to_owned(),
        },
    ))
}

/// The ban list's HGETALL (client, entry, client, entry, ...): the bans in force at `now`,
/// soonest to end first, as `MemoryStore::bans` orders them.
pub(super) fn ban_list(
    flat: Vec<String>,
    now: Millis,
) -> Result<Vec<(ClientKey, Ban)>, StateError> {
    if flat.len() % 2 != 0 {
        return Err(corrupt("the ban list is not pairs"));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks_exact(2) {
        let (key, ban) = listed(&pair[0], &pair[1])?;
        if ban.is_active(now) {
            out.push((key, ban));
        }
    }
    out.sort_by_key(|(k, b)| (b.until, *k));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_ban_hash_reads_back_and_an_ended_one_is_none() {
        let v = || {
            Value::Array(vec![
                bulk("1000"),
                bulk("601000"),
                bulk("2"),
                bulk("5 failed AUTH attempts"),
            ])
        };
        let ban = ban(v(), Millis(2000)).unwrap().unwrap();
        assert_eq!(
            (ban.since, ban.until, ban.offence, ban.reason.as_str()),
            (Millis(1000), Millis(601_000), 2, "5 failed AUTH attempts")
        );
        assert_eq!(super::ban(v(), Millis(601_000)).unwrap(), None);
        let none = Value::Array(vec![Value::Nil, Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(super::ban(none, Millis(0)).unwrap(), None);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let bad_number = Value::Array(vec![bulk("x"), bulk("10"), bulk("1"), bulk("r")]);
        assert!(matches!(
            ban(bad_number, Millis(0)),
            Err(StateError::Corrupt(_))
        ));
        let short = Value::Array(vec![bulk("1")]);
        assert!(matches!(ban(short, Millis(0)), Err(StateError::Corrupt(_))));
        assert!(matches!(count(bulk("many")), Err(StateError::Corrupt(_))));
        assert!(matches!(
            ban_list(vec!["192.0.2.1".into()], Millis(0)),
            Err(StateError::Corrupt(_))
        ));
        assert!(matches!(
            ban_list(vec!["not a client".into(), "1 2 3 r".into()], Millis(0)),
            Err(StateError::Corrupt(_))
        ));
    }

    #[test]
    fn the_ban_list_is_in_force_bans_soonest_first() {
        let flat = vec![
            "2001:db8::/64".into(),
            "0 3000 1 added by admin".into(),
            "192.0.2.1".into(),
            "0 2000 2 5 failed AUTH attempts".into(),
            "192.0.2.2".into(),
            "0 500 1 ended".into(),
        ];
        let list = ban_list(flat, Millis(1000)).unwrap();
        let v6 = ClientKey::parse("2001:db8::/64", 128).unwrap();
        let v4 = ClientKey::parse("192.0.2.1", 128).unwrap();
        assert_eq!(
            list.iter().map(|(k, b)| (*k, b.until)).collect::<Vec<_>>(),
            vec![(v4, Millis(2000)), (v6, Millis(3000))]
        );
        assert_eq!(list[0].1.reason, "5 failed AUTH attempts");
        assert_eq!(list[1].1.reason, "added by admin");
    }
}
