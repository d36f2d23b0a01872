//! What each command does.

use std::{fmt::Display, future::Future, time::Duration};

use cache_page_runtime::{
    Cache, RedisStore, Store, Version, hash_key,
    http::{Request, Uri, header::HOST, request::Parts},
    key_preimage, keys,
    redis::{self, RedisResult, aio::ConnectionManager},
};
use clap::{CommandFactory, error::ErrorKind};
use serde_json::json;

use crate::{
    cli::{Cli, Command, CountArgs, Invalidate, KeyArgs, KeyFunction, Kind, ListArgs, VersionArgs},
    error::CliError,
    input,
    output::Out,
};

/// How many keys one SCAN step asks for.
const SCAN_COUNT: u64 = 1000;

/// The Redis store and cache the commands work on.
struct Ctx {
    /// The Redis URL with its password hidden, for messages.
    url: String,
    store: RedisStore,
    cache: Cache,
    timeout: Duration,
}

impl Ctx {
    /// The store's connection, for the commands the store has no method for.
    fn connection(&self) -> Result<cache_page_runtime::redis::aio::ConnectionManager, CliError> {
        self.store
            .connection()
            .map_err(|err| CliError::from_runtime(&self.url, err))
    }
}

pub async fn run(cli: Cli, out: &mut Out) -> Result<(), CliError> {
    let ctx = Ctx::new(&cli)?;
    match cli.command {
        Command::Invalidate(what) => invalidate(&ctx, what, out).await,
        Command::Key(args) => key(&ctx, args, out).await,
        Command::Version(args) => version(&ctx, args, out).await,
        Command::Count(args) => count(&ctx, args, out).await,
        Command::List(args) => list(&ctx, args, out).await,
    }
}

impl Ctx {
    /// The store is lazy: nothing is sent to Redis before the first command, so
    /// commands that need no Redis (`key --version`) never touch it.
    fn new(cli: &Cli) -> Result<Ctx, CliError> {
        let url = cache_page_runtime::redact_url(&cli.redis_url);
        let store = RedisStore::builder(cli.redis_url.as_str())
            .namespace(cli.namespace.as_str())
            .connect_timeout(cli.timeout)
            .command_timeout(cli.timeout)
            .build()
            .map_err(|err| {
                let reason = match err {
                    cache_page_runtime::Error::Redis(e) => e.to_string(),
                    other => other.to_string(),
                };
                usage(
                    None,
                    ErrorKind::InvalidValue,
                    format!(
                        "invalid value '{url}' for '--redis-url <URL>': {reason} \
                         (expected redis://[user:password@]host[:port][/db] or \
                         redis+unix:///path/to/socket)"
                    ),
                )
            })?;
        let cache = Cache::builder(store.clone()).timeout(cli.timeout).build();
        Ok(Ctx {
            url,
            store,
            cache,
            timeout: cli.timeout,
        })
    }

    /// Runs a runtime call, bounded by the timeout.
    async fn runtime<T>(
        &self,
        fut: impl Future<Output = Result<T, cache_page_runtime::Error>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            // The connection's own timeouts are this one: said the same way, whichever
            // ran out first.
            Ok(Err(err)) if err.is_timeout() => Err(CliError::timeout(&self.url, self.timeout)),
            Ok(Err(err)) => Err(CliError::from_runtime(&self.url, err)),
            Err(_) => Err(CliError::timeout(&self.url, self.timeout)),
        }
    }

    /// Runs a Redis command of the CLI's own, bounded by the timeout.
    async fn redis<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.is_timeout() => Err(CliError::timeout(&self.url, self.timeout)),
            Ok(Err(err)) => Err(CliError::from_redis(&self.url, &err)),
            Err(_) => Err(CliError::timeout(&self.url, self.timeout)),
        }
    }
}

/// A usage error of the command `sub` (the top-level one when `None`), printed by
/// clap with its usage line, and exit status 2.
fn usage(sub: Option<&str>, kind: ErrorKind, message: impl Display) -> CliError {
    let mut cmd = Cli::command();
    cmd.build();
    let sub = sub.and_then(|name| cmd.find_subcommand(name).cloned());
    let mut target = sub.unwrap_or(cmd);
    CliError::Usage(Box::new(target.error(kind, message)))
}

async fn invalidate(ctx: &Ctx, what: Invalidate, out: &mut Out) -> Result<(), CliError> {
    match what {
        Invalidate::Group { names, soft } => {
            for name in names {
                let v = if soft {
                    ctx.runtime(ctx.cache.invalidate_group_soft(&name)).await?
                } else {
                    ctx.runtime(ctx.cache.invalidate_group(&name)).await?
                };
                out.item(
                    v.to_string(),
                    json!({"kind": "group", "name": name, "version": v}),
                )?;
            }
        }
        Invalidate::Path { paths } => {
            for path in paths {
                let v = ctx.runtime(ctx.cache.invalidate_path(&path)).await?;
                out.item(
                    v.to_string(),
                    json!({"kind": "path", "name": path, "version": v}),
                )?;
            }
        }
        Invalidate::Url { urls } => {
            for url in urls {
                let v = ctx
                    .runtime(ctx.cache.invalidate_url(&url.to_string()))
                    .await?;
                out.item(
                    v.to_string(),
                    json!({"kind": "url", "name": canonical_url(&url), "version": v}),
                )?;
            }
        }
        Invalidate::Prefix { prefixes } => {
            for prefix in prefixes {
                let v = ctx.runtime(ctx.cache.invalidate_prefix(&prefix)).await?;
                out.item(
                    v.to_string(),
                    json!({"kind": "prefix", "name": prefix, "version": v}),
                )?;
            }
        }
        Invalidate::Tag { tags } => {
            for tag in tags {
                let n = ctx.runtime(ctx.cache.invalidate_tag(&tag)).await?;
                out.item(
                    n.to_string(),
                    json!({"kind": "tag", "name": tag, "deleted": n}),
                )?;
            }
        }
    }
    Ok(())
}

async fn key(ctx: &Ctx, args: KeyArgs, out: &mut Out) -> Result<(), CliError> {
    let key_usage = |message: String| usage(Some("key"), ErrorKind::ArgumentConflict, message);

    // What the key function returns.
    let key = match (&args.raw_key, &args.url) {
        (Some(raw), _) => raw.clone(),
        (None, Some(url)) => {
            let function = match (args.key, args.params.is_empty()) {
                (None, true) => KeyFunction::Default,
                (None | Some(KeyFunction::Params), false) => KeyFunction::Params,
                (Some(KeyFunction::Params), true) => {
                    return Err(key_usage(
                        "--key params needs the names of the parameters it keeps: \
                         --param page --param sort"
                            .to_owned(),
                    ));
                }
                (Some(other), false) => {
                    return Err(key_usage(format!(
                        "--param is for --key params (keys::query_params), not --key {}",
                        key_function_name(other)
                    )));
                }
                (Some(other), true) => other,
            };
            if url.authority().is_some() && args.host.is_some() {
                return Err(key_usage(format!(
                    "the URL {url} has a host already; give the host either in the URL \
                     or with --host, not both"
                )));
            }
            let mut request = Request::builder().uri(url.clone());
            if let Some(host) = &args.host {
                request = request.header(HOST, host.clone());
            }
            let parts: Parts = match request.body(()) {
                Ok(request) => request.into_parts().0,
                Err(err) => return Err(key_usage(format!("cannot build a request: {err}"))),
            };
            match function {
                KeyFunction::Default => {
                    if url.authority().is_none() && args.host.is_none() {
                        return Err(key_usage(
                            "the default key (keys::default_key) includes the host: give an \
                             absolute URL (https://shop.test/products) or --host shop.test, \
                             or --key path or --key query for a handler keyed without it"
                                .to_owned(),
                        ));
                    }
                    keys::default_key(&parts)
                }
                KeyFunction::Path => keys::path_key(&parts),
                KeyFunction::Query => keys::query_key(&parts),
                KeyFunction::Params => {
                    // `query_params` takes a `'static` list, as in an attribute; this
                    // process ends right after.
                    let names: Vec<&'static str> = args
                        .params
                        .iter()
                        .map(|p| &*Box::leak(p.clone().into_boxed_str()))
                        .collect();
                    keys::query_params(Box::leak(names.into_boxed_slice()))(&parts)
                }
            }
        }
        (None, None) => {
            return Err(key_usage("give the page's URL, or --raw-key".to_owned()));
        }
    };

    // Every --version names a group of the page, once.
    let mut given: Vec<(&str, u64)> = Vec::new();
    for (group, version) in &args.versions {
        if !args.groups.iter().any(|g| g == group) {
            return Err(key_usage(format!(
                "--version {group}={version}: the page has no group {group:?}; name its \
                 groups with --group, in the handler's order"
            )));
        }
        match given.iter().find(|(g, _)| g == group) {
            Some((_, v)) if v != version => {
                return Err(key_usage(format!(
                    "--version gives group {group:?} two versions, {v} and {version}"
                )));
            }
            Some(_) => {}
            None => given.push((group, *version)),
        }
    }
    let mut pairs: Vec<(&str, u64)> = Vec::with_capacity(args.groups.len());
    for group in &args.groups {
        let version = match given.iter().find(|(g, _)| g == group) {
            Some((_, v)) => *v,
            None => ctx.runtime(ctx.cache.group_version(group)).await?,
        };
        pairs.push((group, version));
    }

    let hash = hash_key(&args.prefix, &pairs, &key);
    let redis_key = ctx.store.page_key(&hash);
    let preimage = key_preimage(&args.prefix, &pairs, &key);
    if out.json() {
        let groups: Vec<_> = pairs
            .iter()
            .map(|(name, version)| json!({"name": name, "version": version}))
            .collect();
        out.json_line(&json!({
            "redis_key": redis_key,
            "hash": hash,
            "prefix": args.prefix,
            "groups": groups,
            "key": key,
            "preimage": preimage,
        }))?;
    } else {
        out.bytes_line(redis_key.as_bytes())?;
        if args.show_preimage {
            out.bytes_line(preimage.as_bytes())?;
        }
    }
    Ok(())
}

fn key_function_name(function: KeyFunction) -> &'static str {
    match function {
        KeyFunction::Default => "default",
        KeyFunction::Path => "path",
        KeyFunction::Query => "query",
        KeyFunction::Params => "params",
    }
}

/// The URL as the runtime keeps its version: the path and every query parameter in
/// canonical order, without the host.
fn canonical_url(url: &Uri) -> String {
    let parts = Request::builder()
        .uri(url.path_and_query().map_or("/", |pq| pq.as_str()))
        .body(())
        .map(|r| r.into_parts().0);
    match parts {
        Ok(parts) => format!(
            "{}{}",
            keys::canonical_path(url.path()),
            keys::query_key(&parts)
        ),
        Err(_) => keys::canonical_path(url.path()).into_owned(),
    }
}

async fn version(ctx: &Ctx, args: VersionArgs, out: &mut Out) -> Result<(), CliError> {
    let kind = if args.path {
        Kind::Path
    } else if args.url {
        Kind::Url
    } else if args.prefix {
        Kind::Prefix
    } else {
        Kind::Group
    };
    // Check every name before the first command.
    let mut names = Vec::with_capacity(args.names.len());
    for name in &args.names {
        let checked = match kind {
            Kind::Path => input::parse_path(name),
            Kind::Url => input::parse_url(name).map(|url| canonical_url(&url)),
            Kind::Prefix => input::parse_prefix(name),
            _ => Ok(name.clone()),
        };
        match checked {
            Ok(checked) => names.push(checked),
            Err(message) => {
                return Err(usage(
                    Some("version"),
                    ErrorKind::ValueValidation,
                    format!("invalid value '{name}' for '<NAME>...': {message}"),
                ));
            }
        }
    }
    for name in names {
        let v = match kind {
            Kind::Path => ctx.runtime(ctx.store.version(Version::Path(&name))).await?,
            Kind::Url => ctx.runtime(ctx.store.version(Version::Url(&name))).await?,
            Kind::Prefix => {
                ctx.runtime(ctx.store.version(Version::Prefix(&name)))
                    .await?
            }
            _ => ctx.runtime(ctx.cache.group_version(&name)).await?,
        };
        out.item(
            v.to_string(),
            json!({"kind": kind.as_str(), "name": name, "version": v}),
        )?;
    }
    Ok(())
}

/// Walks the keys under the namespace with SCAN, one step at a time.
struct Scan {
    conn: ConnectionManager,
    namespace: Vec<u8>,
    kinds: Vec<Kind>,
    pattern: Vec<u8>,
    cursor: u64,
    done: bool,
}

impl Scan {
    /// A scan of the keys of `kinds` (every key under the namespace when empty).
    fn new(ctx: &Ctx, mut kinds: Vec<Kind>) -> Result<Scan, CliError> {
        kinds.sort();
        kinds.dedup();
        let namespace = ctx.store.namespace().as_bytes().to_vec();
        let mut pattern = glob_escape(&namespace);
        pattern.push(b':');
        // One kind: let Redis filter. Several: filter here, in one pass.
        if let [kind] = kinds[..] {
            pattern.extend_from_slice(kind.as_str().as_bytes());
            pattern.push(b':');
        }
        pattern.push(b'*');
        Ok(Scan {
            conn: ctx.connection()?,
            namespace,
            kinds,
            pattern,
            cursor: 0,
            done: false,
        })
    }

    /// The next keys, with their kind (`None` for a key of no known kind); `None`
    /// once the scan is complete.
    async fn next(&mut self, ctx: &Ctx) -> Result<Option<Vec<(Vec<u8>, Option<Kind>)>>, CliError> {
        if self.done {
            return Ok(None);
        }
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (cursor, keys): (u64, Vec<Vec<u8>>) =
            ctx.redis(cmd.query_async(&mut self.conn)).await?;
        self.cursor = cursor;
        self.done = cursor == 0;
        let keys = keys
            .into_iter()
            .map(|key| {
                let kind = kind_of(&key, &self.namespace);
                (key, kind)
            })
            .filter(|(_, kind)| {
                self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(&k))
            })
            .collect();
        Ok(Some(keys))
    }
}

/// The kind of `key`: what follows `<namespace>:`, up to the next `:`.
fn kind_of(key: &[u8], namespace: &[u8]) -> Option<Kind> {
    let rest = key.strip_prefix(namespace)?.strip_prefix(b":")?;
    let end = rest.iter().position(|&b| b == b':')?;
    Kind::from_bytes(&rest[..end])
}

/// `bytes` with the characters SCAN's MATCH gives a meaning to (`*?[]\`) escaped.
fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

async fn count(ctx: &Ctx, args: CountArgs, out: &mut Out) -> Result<(), CliError> {
    let mut scan = Scan::new(ctx, args.kinds.clone())?;
    let mut by_kind = [0u64; Kind::ALL.len()];
    let mut other = 0u64;
    while let Some(keys) = scan.next(ctx).await? {
        for (_, kind) in keys {
            match kind {
                Some(kind) => by_kind[kind as usize] += 1,
                None => other += 1,
            }
        }
    }
    let total = by_kind.iter().sum::<u64>() + other;
    if !args.by_kind {
        return out.item(total.to_string(), json!({"count": total}));
    }
    let shown: Vec<Kind> = if args.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        Kind::ALL
            .into_iter()
            .filter(|k| args.kinds.contains(k))
            .collect()
    };
    if out.json() {
        let mut object = serde_json::Map::new();
        for kind in &shown {
            object.insert(kind.as_str().to_owned(), json!(by_kind[*kind as usize]));
        }
        if args.kinds.is_empty() {
            object.insert("other".to_owned(), json!(other));
        }
        object.insert("total".to_owned(), json!(total));
        return out.json_line(&serde_json::Value::Object(object));
    }
    for kind in &shown {
        out.bytes_line(format!("{}\t{}", kind.as_str(), by_kind[*kind as usize]).as_bytes())?;
    }
    if args.kinds.is_empty() {
        out.bytes_line(format!("other\t{other}").as_bytes())?;
    }
    out.bytes_line(format!("total\t{total}").as_bytes())
}

async fn list(ctx: &Ctx, args: ListArgs, out: &mut Out) -> Result<(), CliError> {
    let mut scan = Scan::new(ctx, args.kinds)?;
    let mut conn = ctx.connection()?;
    let mut left = args.limit.unwrap_or(u64::MAX);
    while left > 0
        && let Some(mut keys) = scan.next(ctx).await?
    {
        keys.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        if keys.is_empty() {
            continue;
        }
        // Every TTL of the step in one round trip.
        let mut pipe = redis::pipe();
        for (key, _) in &keys {
            pipe.cmd("TTL").arg(key);
        }
        let ttls: Vec<i64> = ctx.redis(pipe.query_async(&mut conn)).await?;
        for ((key, kind), ttl) in keys.into_iter().zip(ttls) {
            // -2: the key went away since the SCAN step.
            if ttl == -2 {
                continue;
            }
            let ttl = (ttl >= 0).then_some(ttl);
            if out.json() {
                out.json_line(&json!({
                    "key": String::from_utf8_lossy(&key),
                    "kind": kind.map(Kind::as_str),
                    "ttl": ttl,
                }))?;
            } else {
                let mut line = key;
                line.push(b'\t');
                match ttl {
                    Some(ttl) => line.extend_from_slice(ttl.to_string().as_bytes()),
                    None => line.push(b'-'),
                }
                out.bytes_line(&line)?;
            }
            left -= 1;
        }
        // Show each step as it comes, so a long listing streams.
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_after_the_namespace() {
        assert_eq!(
            kind_of(b"cache-page:page:abc", b"cache-page"),
            Some(Kind::Page)
        );
        assert_eq!(
            kind_of(b"cache-page:url:/a?b=1:2", b"cache-page"),
            Some(Kind::Url)
        );
        assert_eq!(kind_of(b"cache-page:other:x", b"cache-page"), None);
        assert_eq!(kind_of(b"cache-page:page", b"cache-page"), None);
        assert_eq!(kind_of(b"cache-pagex:page:abc", b"cache-page"), None);
        // A namespace nested in another is not taken for a kind of it.
        assert_eq!(kind_of(b"a:b:page:abc", b"a"), None);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape(b"ns"), b"ns");
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn canonical_urls_sort_the_query_and_drop_the_host() {
        let url = input::parse_url("https://shop.test/p?b=1&a=%32").unwrap();
        assert_eq!(canonical_url(&url), "/p?a=2&b=1");
        assert_eq!(canonical_url(&input::parse_url("/p").unwrap()), "/p");
    }
}
