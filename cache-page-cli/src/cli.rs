//! The command line, as clap parses it.

use std::time::Duration;

use cache_page_runtime::http::{HeaderValue, Uri};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::input;

/// What every `--help` ends with.
macro_rules! exit_status {
    () => {
        "\
Exit status:
  0  success
  1  Redis could not be reached, did not answer in time, or answered with an error
     (one line on stderr: `error: cannot reach Redis at redis://…: connection refused`)
  2  bad usage: an unknown command or option, a malformed URL, version or timeout"
    };
}

/// A command's examples, then the exit status.
macro_rules! after_help {
    ($examples:literal) => {
        concat!($examples, "\n\n", exit_status!())
    };
}

/// Operate a cache-page cache in Redis: invalidate pages, find the Redis key of a
/// page, read versions, count and list entries.
#[derive(Debug, Parser)]
#[command(
    name = "cache-page",
    version,
    after_help = after_help!(
        "Examples:\n  \
         cache-page invalidate group views\n  \
         cache-page key https://shop.test/products?page=2 --prefix p --group views\n  \
         cache-page count --by-kind\n  \
         REDIS_URL=redis://cache:6379/1 cache-page list --kind page --limit 20"
    ),
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The Redis server the cache lives in: `redis://user:password@host:port/db` (all
    /// but the host optional), or `redis+unix:///path/to/socket`
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        help_heading = "Global options",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379",
        value_name = "URL"
    )]
    pub redis_url: String,

    /// The namespace the cache's keys live under (`RedisStore::builder().namespace()`)
    #[arg(
        long,
        global = true,
        env = "CACHE_PAGE_NAMESPACE",
        help_heading = "Global options",
        hide_env_values = true,
        default_value = "cache-page",
        value_name = "NS"
    )]
    pub namespace: String,

    /// How long to wait for Redis, per command, in milliseconds (`500`, `500ms`, `2s`)
    #[arg(
        long,
        global = true,
        default_value = "5000",
        help_heading = "Global options",
        value_name = "MS",
        value_parser = input::parse_timeout
    )]
    pub timeout: Duration,

    /// Print one JSON object per line instead of plain text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Invalidate pages: every page of a group, a path, a URL or a prefix (O(1) each),
    /// or delete the pages of a tag
    #[command(subcommand, after_help = exit_status!())]
    Invalidate(Invalidate),

    /// Print the Redis key a page is stored at, for a URL and the handler's prefix,
    /// groups and key function
    #[command(
        long_about = "Print the Redis key a page is stored at, for a URL and the handler's \
                      prefix, groups and key function: `<namespace>:page:<md5>`, where the \
                      md5 is `hash_key(prefix, [(group, version)…], key)`.\n\n\
                      The current version of each group is read from Redis (a group that \
                      has none yet is given one, as the first request for it would), \
                      unless it is given with --version, in which case Redis is not \
                      touched.\n\n\
                      For a page that varies on request headers (Vary), the key holds the \
                      page's vary index; a page cached per caller (Authorization) is \
                      stored elsewhere.",
        after_help = after_help!(
            "Examples:\n  \
             # #[cache_page(timeout = 60, key = path_key, group = \"views\", prefix = \"p\")]\n  \
             cache-page key /products?page=2 --key path --group views --prefix p\n  \
             # the default key includes the host:\n  \
             cache-page key https://shop.test/products?page=2 --group views\n  \
             # no Redis needed, and the string that is hashed:\n  \
             cache-page key /foo --key path --prefix p --group views --version views=7 --show-preimage\n  \
             redis-cli TTL \"$(cache-page key /foo --key path --group views)\""
        )
    )]
    Key(KeyArgs),

    /// Print the current version of groups (or of paths, URLs or prefixes)
    #[command(
        long_about = "Print the current version of each group named, one a line, in the \
                      order given. With --path, --url or --prefix, the names are paths, \
                      URLs or prefixes instead.\n\n\
                      A name that has no version yet is given one, as the first request \
                      for one of its pages would.",
        after_help = after_help!(
            "Examples:\n  \
             cache-page version views\n  \
             cache-page version --path /products/42\n  \
             cache-page version --url '/products?sort=price&page=2'"
        )
    )]
    Version(VersionArgs),

    /// Count the keys under the namespace (SCAN with a cursor, never KEYS)
    #[command(
        long_about = "Count the keys under the namespace: SCAN with a cursor, 1000 keys a \
                      step, so Redis is never blocked. Like every SCAN, a key added or \
                      removed during the count may or may not be counted, and one may be \
                      counted twice if Redis resizes its table meanwhile.",
        after_help = after_help!(
            "Examples:\n  \
             cache-page count\n  \
             cache-page count --kind page\n  \
             cache-page count --by-kind"
        )
    )]
    Count(CountArgs),

    /// List the keys under the namespace with their TTL (SCAN with a cursor, never KEYS)
    #[command(
        long_about = "List the keys under the namespace, one a line: the key, a tab, and \
                      its TTL in seconds (`-` when it has none). SCAN with a cursor, 1000 \
                      keys a step, so Redis is never blocked; keys come in no particular \
                      order.",
        after_help = after_help!(
            "Examples:\n  \
             cache-page list --kind page --limit 20\n  \
             cache-page list --kind group,prefix\n  \
             cache-page list --json | jq -r 'select(.ttl == null) | .key'"
        )
    )]
    List(ListArgs),
}

#[derive(Debug, Subcommand)]
pub enum Invalidate {
    /// Invalidate every page of each group, in O(1); prints each group's new version
    #[command(after_help = after_help!(
        "Examples:\n  cache-page invalidate group views catalogue\n  \
         cache-page invalidate group --soft views"
    ))]
    Group {
        /// The group's name, as the handler names it (`group = "views"`)
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Softly: handlers with a `grace` serve the old pages stale, within their
        /// grace, while they are rebuilt (`invalidate_group_soft`)
        #[arg(long)]
        soft: bool,
    },

    /// Invalidate every page of each URL path, whatever its query string and headers;
    /// prints each path's new version
    #[command(after_help = after_help!(
        "Example:\n  cache-page invalidate path /products/42"
    ))]
    Path {
        /// The path, as the client requests it (`/products/42`; characters a browser
        /// would percent-encode are encoded the same way). A scheme and host are ignored
        #[arg(required = true, value_name = "PATH", value_parser = input::parse_path)]
        paths: Vec<String>,
    },

    /// Invalidate every page of each URL (path and query string), whatever the request
    /// headers; prints each URL's new version
    #[command(after_help = after_help!(
        "Example:\n  cache-page invalidate url '/products?page=2&sort=price'"
    ))]
    Url {
        /// The URL: `/path?query`, or an absolute URL whose scheme and host are
        /// ignored. The order and encoding of query parameters do not matter
        #[arg(required = true, value_name = "URL", value_parser = input::parse_url)]
        urls: Vec<Uri>,
    },

    /// Invalidate every page stored under each handler prefix, in O(1); prints each
    /// prefix's new version
    #[command(after_help = after_help!("Example:\n  cache-page invalidate prefix v2"))]
    Prefix {
        /// The handler's prefix (`prefix = "v2"`)
        #[arg(required = true, value_name = "PREFIX", value_parser = input::parse_prefix)]
        prefixes: Vec<String>,
    },

    /// Delete every page stored with each tag now, freeing its memory; prints the
    /// number of pages deleted per tag
    #[command(after_help = after_help!("Example:\n  cache-page invalidate tag product:42"))]
    Tag {
        /// The tag
        #[arg(required = true, value_name = "TAG")]
        tags: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("page").required(true).args(["url", "raw_key"])))]
pub struct KeyArgs {
    /// The page's URL: `/path?query`, or `https://host/path?query` (the default key
    /// includes the host)
    #[arg(value_name = "URL", value_parser = input::parse_url)]
    pub url: Option<Uri>,

    /// The handler's prefix (`prefix = "p"`)
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,

    /// A group of the handler; repeat it for each group, in the handler's order
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,

    /// The handler's key function [default: default, or params with --param]
    #[arg(long, value_enum, value_name = "FUNCTION")]
    pub key: Option<KeyFunction>,

    /// A query parameter kept by `keys::query_params(&[…])`; repeat it or separate
    /// names with commas (implies --key params)
    #[arg(long = "param", value_name = "NAME", value_delimiter = ',')]
    pub params: Vec<String>,

    /// The Host header of the request, for the default key and a URL without a host
    #[arg(long, value_name = "HOST", value_parser = input::parse_host)]
    pub host: Option<HeaderValue>,

    /// A group's version, given by hand instead of read from Redis; repeatable
    #[arg(long = "version", value_name = "GROUP=N", value_parser = input::parse_group_version)]
    pub versions: Vec<(String, u64)>,

    /// The key function's output itself, for a custom key function (instead of a URL)
    #[arg(long, value_name = "KEY", conflicts_with_all = ["url", "key", "params", "host"])]
    pub raw_key: Option<String>,

    /// Also print the string that is hashed (the netstring preimage), on a second line
    #[arg(long)]
    pub show_preimage: bool,
}

/// The key functions that ship with the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyFunction {
    /// `keys::default_key`: host, path and every query parameter
    Default,
    /// `keys::path_key`: the path alone
    Path,
    /// `keys::query_key`: the query parameters alone
    Query,
    /// `keys::query_params(&[…])`: the path and the parameters named with --param
    Params,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kind").args(["path", "url", "prefix"])))]
pub struct VersionArgs {
    /// The groups (or paths, URLs, prefixes) whose version to print
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,

    /// The names are URL paths (`/products/42`)
    #[arg(long)]
    pub path: bool,

    /// The names are URLs (`/products?page=2`)
    #[arg(long)]
    pub url: bool,

    /// The names are handler prefixes
    #[arg(long)]
    pub prefix: bool,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Count only keys of these kinds (repeat it or separate kinds with commas)
    #[arg(long = "kind", value_enum, value_delimiter = ',', value_name = "KIND")]
    pub kinds: Vec<Kind>,

    /// Print one line per kind (`page<TAB>12`), then `total<TAB>N`
    #[arg(long)]
    pub by_kind: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only keys of these kinds (repeat it or separate kinds with commas)
    #[arg(long = "kind", value_enum, value_delimiter = ',', value_name = "KIND")]
    pub kinds: Vec<Kind>,

    /// Stop after this many keys
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// The kinds of key cache-page writes, as they appear after the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Kind {
    /// `<ns>:page:<md5>`: a stored page (or a vary index)
    Page,
    /// `<ns>:group:<name>`: a group's version
    Group,
    /// `<ns>:path:<path>`: a URL path's version
    Path,
    /// `<ns>:url:<path?query>`: a URL's version
    Url,
    /// `<ns>:prefix:<prefix>`: a prefix's version
    Prefix,
    /// `<ns>:tag:<tag>`: the pages of a tag
    Tag,
    /// `<ns>:lock:<md5>`: a lock across instances
    Lock,
    /// `<ns>:soft:<group>`: a group's last soft invalidation
    Soft,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Page,
        Kind::Group,
        Kind::Path,
        Kind::Url,
        Kind::Prefix,
        Kind::Tag,
        Kind::Lock,
        Kind::Soft,
    ];

    /// The kind as it appears in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Page => "page",
            Kind::Group => "group",
            Kind::Path => "path",
            Kind::Url => "url",
            Kind::Prefix => "prefix",
            Kind::Tag => "tag",
            Kind::Lock => "lock",
            Kind::Soft => "soft",
        }
    }

    /// The kind whose name is `name`.
    pub fn from_bytes(name: &[u8]) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().as_bytes() == name)
    }
}
