//! The Lua scripts, each with the shared helpers of `common.lua` in front, and the argument
//! conversions they rely on.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;

use crate::limits::Millis;

fn with_common(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("common.lua")))
}

pub(super) static RECORD_FAILURE: LazyLock<Script> =
    LazyLock::new(|| with_common(include_str!("record_failure.lua")));
pub(super) static ADD_BAN: LazyLock<Script> =
    LazyLock::new(|| with_common(include_str!("add_ban.lua")));
pub(super) static REMOVE_BAN: LazyLock<Script> =
    LazyLock::new(|| with_common(include_str!("remove_ban.lua")));
pub(super) static BAN_INDEX: LazyLock<Script> =
    LazyLock::new(|| with_common(include_str!("ban_index.lua")));

/// The longest duration passed to Redis, in milliseconds: 2^50 ms is some 35,000 years, and
/// keeps `now + d` exact in Lua's doubles (2^53).
const LONGEST_MS: u64 = 1 << 50;

/// The latest time passed to Redis: the largest integer a double holds exactly. A ban "for
/// ever" (`until` saturated at `u64::MAX`) is kept as ending then, some 285,000 years on.
const LATEST_MS: u64 = (1 << 53) - 1;

/// `d` in milliseconds, as Redis and the scripts take it.
pub(super) fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(LONGEST_MS)) as u64
}

/// A time as Redis and the scripts take it.
pub(super) fn at(t: Millis) -> u64 {
    t.0.min(LATEST_MS)
}
