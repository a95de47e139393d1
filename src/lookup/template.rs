//! The `%` templates of Postfix's SQL and LDAP tables (db_common.c): a query template
//! expanded with the lookup key, a `result_format` expanded with each value found, and which
//! keys never reach the server at all.
//!
//! No I/O: a backend hands in its own quoting (the dict_*_quote() functions) and gets text.

use super::table::TableReply;

/// Postfix's quote callback: appends `value` to `out`, escaped for the query language.
pub type Quote = fn(&str, &mut String);

// db_common.c's context flags, accumulated over the query and the result template: a result
// template that uses `%D` suppresses the query for keys without a domain, as in Postfix.
const KEY_DOMAIN: u8 = 1 << 0;
const KEY_USER: u8 = 1 << 1;
const VALUE_DOMAIN: u8 = 1 << 2;
const VALUE_USER: u8 = 1 << 3;

/// A table's query and result templates, checked once at open.
#[derive(Debug, Clone)]
pub struct Templates {
    /// LDAP's search_base, a second query template expanded with its own quoting.
    base: String,
    query: String,
    result: String,
    flags: u8,
    /// The highest `%1`..`%9` in either template: keys with fewer domain labels are skipped.
    nparts: usize,
}

impl Templates {
    /// Checks both templates as db_common_parse() does; the error names the bad template.
    pub fn new(query: &str, result_format: &str) -> Result<Templates, String> {
        Templates::with_base("", query, result_format)
    }

    /// LDAP's three templates: search_base and query_filter (both expanded with the key) and
    /// result_format. The error says which one is bad.
    pub fn with_base(base: &str, query: &str, result_format: &str) -> Result<Templates, String> {
        let mut t = Templates {
            base: base.to_string(),
            query: query.to_string(),
            result: result_format.to_string(),
            flags: 0,
            nparts: 0,
        };
        t.parse(base, true)
            .map_err(|_| format!("Invalid search_base template: {base}"))?;
        t.parse(query, true)?;
        t.parse(result_format, false)?;
        Ok(t)
    }

    /// Whether the search base depends on the key (db_common_parse()'s "dynamic"): then a
    /// missing base object means the key is not there, not a broken table.
    pub fn base_is_dynamic(&self) -> bool {
        let mut chars = self.base.chars();
        while let Some(c) = chars.next() {
            if c == '%' && chars.next().is_some_and(|n| n != '%') {
                return true;
            }
        }
        false
    }

    /// The search base for `key` (see [`Templates::query`] for `None`).
    pub fn base(&self, key: &str, quote: Quote) -> Option<String> {
        if self.base.is_empty() {
            // db_common_expand() of an empty template still checks the key, appends nothing.
            return self
                .expand("", key, None, &mut String::new(), None)
                .then(String::new);
        }
        let mut out = String::new();
        self.expand(&self.base, key, None, &mut out, Some(quote))
            .then_some(out)
    }

    fn parse(&mut self, format: &str, query: bool) -> Result<(), String> {
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                continue;
            }
            match chars.next() {
                Some('%' | 's' | 'S') => {}
                Some('u') => self.flags |= if query { KEY_USER } else { VALUE_USER },
                Some('d') => self.flags |= if query { KEY_DOMAIN } else { VALUE_DOMAIN },
                Some('U') => self.flags |= KEY_USER,
                Some(d @ '1'..='9') => {
                    self.nparts = self.nparts.max(d as usize - '0' as usize);
                    self.flags |= KEY_DOMAIN;
                }
                Some('D') => self.flags |= KEY_DOMAIN,
                _ => {
                    let which = if query { "query" } else { "result" };
                    return Err(format!("Invalid {which} template: {format}"));
                }
            }
        }
        Ok(())
    }

    /// The query for `key`, each substituted piece passed through `quote`; `None` when the key
    /// lacks what the templates need (no domain for `%d`, an empty local part for `%u`, too few
    /// labels for `%3`, or an empty key): Postfix then answers "not found" without asking.
    pub fn query(&self, key: &str, quote: Quote) -> Option<String> {
        let mut out = String::with_capacity(self.query.len() + key.len());
        self.expand(&self.query, key, None, &mut out, Some(quote))
            .then_some(out)
    }

    /// Appends one found `value`, formatted by `result_format`, to `out` (after a comma when
    /// `out` is not empty). False, with `out` untouched, when the value is skipped: empty, or
    /// lacking the domain or local part the format uses.
    pub fn push_result(&self, value: &str, key: &str, out: &mut String) -> bool {
        self.expand(&self.result, value, Some(key), out, None)
    }

    /// Collects the values one lookup of `key` found into its answer (see [`Results`]).
    pub fn results<'t>(&'t self, key: &'t str, limit: usize, table: &'t str) -> Results<'t> {
        Results {
            templates: self,
            key,
            limit,
            table,
            count: 0,
            out: String::new(),
        }
    }

    /// db_common_expand(): `value` is the key for a query and the found value for a result, in
    /// which case `key` is the lookup key (for `%S %U %D %1..%9`).
    fn expand(
        &self,
        format: &str,
        value: &str,
        key: Option<&str>,
        out: &mut String,
        quote: Option<Quote>,
    ) -> bool {
        if value.is_empty() {
            return false;
        }
        let at_domain = |s: &str| s.rfind('@').map(|i| i + 1);
        let (vuser_flag, vdomain_flag) = match key {
            Some(_) => (VALUE_USER, VALUE_DOMAIN),
            None => (KEY_USER, KEY_DOMAIN),
        };
        let vdomain = if self.flags & (vuser_flag | vdomain_flag) != 0 {
            at_domain(value)
        } else {
            None
        };
        if self.lacks_parts(value, vdomain, vuser_flag, vdomain_flag) {
            return false;
        }
        let kdomain = match key {
            Some(k) if self.flags & (KEY_DOMAIN | KEY_USER) != 0 => at_domain(k),
            _ => None,
        };
        if let Some(k) = key {
            if self.lacks_parts(k, kdomain, KEY_USER, KEY_DOMAIN) {
                return false;
            }
        }
        // %1..%9 count labels from the right of the key's domain; argv_split() drops empty
        // labels, so `a..b` has two.
        let domain_of_key = match key {
            Some(k) => kdomain.map(|i| &k[i..]),
            None => vdomain.map(|i| &value[i..]),
        };
        let labels: Vec<&str> = if self.nparts > 0 {
            let labels: Vec<&str> = domain_of_key
                .unwrap_or("")
                .split('.')
                .filter(|l| !l.is_empty())
                .collect();
            if labels.len() < self.nparts {
                return false;
            }
            labels
        } else {
            Vec::new()
        };
        if !out.is_empty() {
            out.push(',');
        }
        let put = |out: &mut String, s: &str| match quote {
            Some(q) => q(s, out),
            None => out.push_str(s),
        };
        let user_of = |s: &'_ str, d: Option<usize>| -> String {
            match d {
                Some(i) => s[..i - 1].to_string(),
                None => s.to_string(),
            }
        };
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('s') => put(out, value),
                Some('u') => put(out, &user_of(value, vdomain)),
                Some('d') => put(out, vdomain.map(|i| &value[i..]).unwrap_or("")),
                Some('S') => put(out, key.unwrap_or(value)),
                Some('U') => match key {
                    Some(k) => put(out, &user_of(k, kdomain)),
                    None => put(out, &user_of(value, vdomain)),
                },
                Some('D') => put(out, domain_of_key.unwrap_or("")),
                Some(d @ '1'..='9') => {
                    let n = d as usize - '0' as usize;
                    let label = labels.len().checked_sub(n).and_then(|i| labels.get(i));
                    put(out, label.copied().unwrap_or(""));
                }
                // Templates were checked at open.
                _ => {}
            }
        }
        true
    }

    /// The checks before an expansion: a needed domain is missing or empty, or a needed local
    /// part is empty (`@example.com`).
    fn lacks_parts(&self, s: &str, domain: Option<usize>, user: u8, dom: u8) -> bool {
        let no_domain = domain.is_none_or(|i| i >= s.len());
        (no_domain && self.flags & dom != 0) || (domain == Some(1) && self.flags & user != 0)
    }
}

/// One lookup's answer as the SQL and LDAP tables build it: each value through
/// result_format, joined with commas; more than `limit` values (0: no limit) is a failure,
/// DICT_ERR_RETRY in Postfix.
pub struct Results<'t> {
    templates: &'t Templates,
    key: &'t str,
    limit: usize,
    table: &'t str,
    count: usize,
    out: String,
}

impl Results<'_> {
    /// Adds one value; `Err` is the answer once the expansion limit is passed.
    pub fn push(&mut self, value: &str) -> Result<(), TableReply> {
        if self.templates.push_result(value, self.key, &mut self.out) {
            self.count += 1;
            if self.limit > 0 && self.count > self.limit {
                return Err(TableReply::Failed(format!(
                    "{}: Expansion limit exceeded for key: '{}'",
                    self.table, self.key
                )));
            }
        }
        Ok(())
    }

    pub fn finish(self) -> TableReply {
        if self.out.is_empty() {
            TableReply::NotFound
        } else {
            TableReply::Found(self.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_quote(v: &str, out: &mut String) {
        for c in v.chars() {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
        }
    }

    fn q(query: &str, key: &str) -> Option<String> {
        Templates::new(query, "%s").unwrap().query(key, sql_quote)
    }

    #[test]
    fn query_expansions() {
        assert_eq!(q("k='%s'", "a@b.example").unwrap(), "k='a@b.example'");
        assert_eq!(q("%u|%d", "a@b.example").unwrap(), "a|b.example");
        assert_eq!(q("%u", "plain").unwrap(), "plain");
        assert_eq!(q("%U/%D/%S", "a@b.c").unwrap(), "a/b.c/a@b.c");
        assert_eq!(q("%1.%2.%3", "u@x.y.z").unwrap(), "z.y.x");
        assert_eq!(q("100%%", "k").unwrap(), "100%");
        assert_eq!(q("'%s'", "o'brien").unwrap(), "'o''brien'");
    }

    #[test]
    fn keys_that_skip_the_query() {
        assert_eq!(q("%d", "nodomain"), None);
        assert_eq!(q("%d", "user@"), None);
        assert_eq!(q("%u", "@example.com"), None);
        assert_eq!(q("%3", "u@y.z"), None);
        assert_eq!(q("%2", "u@a..b").unwrap(), "a");
        assert_eq!(q("%s", ""), None);
        // The result template's %D makes the key's domain a precondition of the query.
        let t = Templates::new("%s", "%D").unwrap();
        assert_eq!(t.query("nodomain", sql_quote), None);
    }

    #[test]
    fn bad_templates() {
        assert_eq!(
            Templates::new("%x", "%s").unwrap_err(),
            "Invalid query template: %x"
        );
        assert_eq!(
            Templates::new("%s", "trailing %").unwrap_err(),
            "Invalid result template: trailing %"
        );
    }

    #[test]
    fn results_join_and_skip() {
        let t = Templates::new("%s", "smtp:[%d] for %U").unwrap();
        let mut out = String::new();
        assert!(t.push_result("x@relay.example", "bob@k.example", &mut out));
        assert!(!t.push_result("nodomain", "bob@k.example", &mut out));
        assert!(!t.push_result("", "bob@k.example", &mut out));
        assert!(t.push_result("y@two.example", "bob@k.example", &mut out));
        assert_eq!(
            out,
            "smtp:[relay.example] for bob,smtp:[two.example] for bob"
        );
    }
}
