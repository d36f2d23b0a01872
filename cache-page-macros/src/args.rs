//! Parsing `#[cache_page(name = value, ...)]` into [`Args`].
//!
//! Parsing is strict and never stops at the first mistake it can recover from: every
//! unknown, duplicate or mistyped argument becomes a `syn::Error` at the offending
//! token, and all of them are reported together. Only a syntax error (a positional
//! argument, a missing `=`) ends parsing early.
//!
//! An error about a value is at its first token (stable Rust cannot join spans): the
//! literal, or the start of the expression.
//!
//! Every argument is one row of [`ARGS`]; adding one is a row there, a field in
//! [`Args`] and a line in `expand.rs`.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::{
    Expr, ExprLit, Lit, LitBool, LitInt, LitStr, Path, UnOp,
    ext::IdentExt as _,
    meta::ParseNestedMeta,
    parse::{ParseStream, Parser as _},
    spanned::Spanned as _,
};

/// Everything the attribute said, each value kept with its span.
#[derive(Default)]
pub(crate) struct Args {
    /// `crate = "path"`: where the runtime is, if it was renamed (default
    /// `::cache_page_runtime`).
    pub(crate) krate: Option<Path>,
    /// `timeout = ...`: required.
    pub(crate) timeout: Option<Timeout>,
    /// `key = <fn>`.
    pub(crate) key: Option<Expr>,
    /// `group = ...`, in the order written; may repeat.
    pub(crate) groups: Vec<Part>,
    /// `prefix = ...`.
    pub(crate) prefix: Option<Part>,
    /// `store = "name"`.
    pub(crate) store: Option<LitStr>,
    /// `statuses = [200, 404]`: the statuses stored.
    pub(crate) statuses: Option<Vec<LitInt>>,
    /// `only_if = <fn>`: a predicate on the request.
    pub(crate) only_if: Option<Expr>,
    /// `authorized = true`: cache requests with credentials, per caller.
    pub(crate) authorized: Option<LitBool>,
    /// `tag = ...`, in the order written; may repeat.
    pub(crate) tags: Vec<Part>,
    /// `grace = <seconds>`: how long a stale page may still be served.
    pub(crate) grace: Option<Grace>,
}

/// `grace = ...`.
pub(crate) enum Grace {
    /// A literal number of seconds (0 allowed), with a `u64` suffix.
    Secs(LitInt),
    /// Any other expression of type `u64`: a constant, `60 * 5`.
    Expr(Expr),
}

/// `timeout = ...`.
pub(crate) enum Timeout {
    /// A literal number of seconds, at least 1, with its `u64` suffix.
    Secs(LitInt),
    /// Any other expression: a constant, `60 * 15`, a function of the response.
    Expr(Expr),
}

/// A string that is either fixed (`"text"`) or computed from the request (a function).
pub(crate) enum Part {
    Fixed(LitStr),
    Computed(Expr),
}

/// What storing one argument's value does; the error is at the value.
type Store = fn(&mut Args, Expr) -> syn::Result<()>;

/// Every argument: its name, whether it may be given more than once, and where its
/// value goes. The list of names in "unknown argument" errors comes from here.
const ARGS: &[(&str, bool, Store)] = &[
    ("timeout", false, |args, value| {
        args.timeout = Some(timeout(value)?);
        Ok(())
    }),
    ("key", false, |args, value| {
        args.key = Some(function("key", value)?);
        Ok(())
    }),
    ("group", true, |args, value| {
        let group = part("group", value)?;
        if let Part::Fixed(lit) = &group
            && lit.value().is_empty()
        {
            return Err(syn::Error::new(
                lit.span(),
                "`group` cannot be an empty string",
            ));
        }
        args.groups.push(group);
        Ok(())
    }),
    ("prefix", false, |args, value| {
        args.prefix = Some(part("prefix", value)?);
        Ok(())
    }),
    ("store", false, |args, value| {
        args.store = Some(string(&value).ok_or_else(|| {
            syn::Error::new(
                value.span(),
                "`store` takes the name of an installed cache as a string literal, \
                 e.g. `store = \"reports\"`",
            )
        })?);
        Ok(())
    }),
    ("crate", false, |args, value| {
        args.krate = Some(crate_path(&value)?);
        Ok(())
    }),
    ("statuses", false, |args, value| {
        args.statuses = Some(statuses(&value)?);
        Ok(())
    }),
    ("only_if", false, |args, value| {
        args.only_if = Some(function("only_if", value)?);
        Ok(())
    }),
    ("authorized", false, |args, value| {
        match literal(&value) {
            Some((Lit::Bool(b), false)) => args.authorized = Some(b.clone()),
            _ => {
                return Err(syn::Error::new(
                    value.span(),
                    "`authorized` takes `true` or `false`",
                ));
            }
        }
        Ok(())
    }),
    ("tag", true, |args, value| {
        let tag = part("tag", value)?;
        if let Part::Fixed(lit) = &tag
            && lit.value().is_empty()
        {
            return Err(syn::Error::new(
                lit.span(),
                "`tag` cannot be an empty string",
            ));
        }
        args.tags.push(tag);
        Ok(())
    }),
    ("grace", false, |args, value| {
        args.grace = Some(grace(value)?);
        Ok(())
    }),
];

impl Args {
    /// Parses the attribute's arguments. `Err` holds every error found, combined.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut parser = ArgsParser::default();
        let parsed = syn::meta::parser(|meta| parser.arg(&meta)).parse2(tokens);
        let ArgsParser {
            args,
            seen,
            mut errors,
        } = parser;
        errors.extend(parsed.err());
        if let Some(error) = combine(errors) {
            return Err(error);
        }
        if !seen.iter().any(|name| name == "timeout") {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing `timeout`: add `timeout = <seconds>`",
            ));
        }
        Ok(args)
    }
}

/// Parsing state: the arguments so far, the names seen, the errors so far.
#[derive(Default)]
struct ArgsParser {
    args: Args,
    seen: Vec<String>,
    errors: Vec<syn::Error>,
}

impl ArgsParser {
    /// One `name = value`. Returns `Err` only for a syntax error; every other mistake
    /// is recorded and parsing goes on.
    fn arg(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        let name = match meta.path.get_ident() {
            Some(ident) => ident.unraw().to_string(),
            None => path_to_string(&meta.path),
        };
        let Some(&(name, repeats, store)) = ARGS.iter().find(|(known, ..)| *known == name) else {
            let expected: Vec<&str> = ARGS.iter().map(|(known, ..)| *known).collect();
            self.errors.push(syn::Error::new_spanned(
                &meta.path,
                format!(
                    "unknown argument `{name}`; expected one of: {}",
                    expected.join(", ")
                ),
            ));
            return skip_value(meta.input);
        };
        let value: Expr = meta.value()?.parse()?;
        if !repeats && self.seen.iter().any(|seen| seen == name) {
            self.errors.push(syn::Error::new_spanned(
                &meta.path,
                format!("`{name}` is specified more than once"),
            ));
            return Ok(());
        }
        self.seen.push(name.to_owned());
        if let Err(error) = store(&mut self.args, value) {
            self.errors.push(error);
        }
        Ok(())
    }
}

/// All `errors` as one, in order; `None` if there are none.
pub(crate) fn combine(errors: impl IntoIterator<Item = syn::Error>) -> Option<syn::Error> {
    errors.into_iter().reduce(|mut all, more| {
        all.combine(more);
        all
    })
}

/// `timeout`: a literal number of seconds (at least 1), or any non-literal expression.
fn timeout(value: Expr) -> syn::Result<Timeout> {
    let zero = |span| syn::Error::new(span, "timeout must be at least 1 second");
    match literal(&value) {
        None => Ok(Timeout::Expr(value)),
        Some((Lit::Int(int), negative)) => {
            let secs: u64 = int.base10_parse()?;
            if negative || secs == 0 {
                return Err(zero(value.span()));
            }
            let suffix = if int.suffix().is_empty() {
                "u64"
            } else {
                int.suffix()
            };
            Ok(Timeout::Secs(LitInt::new(
                &format!("{secs}{suffix}"),
                int.span(),
            )))
        }
        Some((lit, _)) => Err(syn::Error::new(
            value.span(),
            format!(
                "`timeout` takes a number of seconds or a function of the response, not {}",
                describe(lit)
            ),
        )),
    }
}

/// `grace`: a literal number of seconds (0 or more), or any non-literal expression (a
/// constant, `60 * 5`), which the compiler checks is a `u64`.
fn grace(value: Expr) -> syn::Result<Grace> {
    match literal(&value) {
        None => Ok(Grace::Expr(value)),
        Some((Lit::Int(int), false)) => {
            let secs: u64 = int.base10_parse()?;
            Ok(Grace::Secs(LitInt::new(&format!("{secs}u64"), int.span())))
        }
        Some((lit, negative)) => Err(syn::Error::new(
            value.span(),
            format!(
                "`grace` takes a number of seconds or a `u64` constant, e.g. `grace = 30`, \
                 not {}",
                if negative {
                    "a negative number"
                } else {
                    describe(lit)
                }
            ),
        )),
    }
}

/// `key`: a function (a path, a call returning one, a closure), never a literal.
fn function(name: &str, value: Expr) -> syn::Result<Expr> {
    match literal(&value) {
        None => Ok(value),
        Some((lit, _)) => Err(syn::Error::new(
            value.span(),
            format!("`{name}` takes a function, not {}", describe(lit)),
        )),
    }
}

/// `group`, `prefix`: a string literal, or a function of the request.
fn part(name: &str, value: Expr) -> syn::Result<Part> {
    match literal(&value) {
        None => Ok(Part::Computed(value)),
        Some((Lit::Str(lit), false)) => Ok(Part::Fixed(lit.clone())),
        Some((lit, _)) => Err(syn::Error::new(
            value.span(),
            format!(
                "`{name}` takes a string literal or a function of the request, not {}",
                describe(lit)
            ),
        )),
    }
}

/// `statuses`: a list of integer literals, each a status code that may be stored.
fn statuses(value: &Expr) -> syn::Result<Vec<LitInt>> {
    let Expr::Array(array) = value else {
        return Err(syn::Error::new(
            value.span(),
            "`statuses` takes a list of status codes, e.g. `statuses = [200, 404]`",
        ));
    };
    let mut codes = Vec::with_capacity(array.elems.len());
    let mut errors = Vec::new();
    for elem in &array.elems {
        let code = match literal(elem) {
            Some((Lit::Int(int), false)) => int.base10_parse::<u16>().ok().map(|c| (c, int)),
            _ => None,
        };
        match code {
            Some((304, int)) => errors.push(syn::Error::new(
                int.span(),
                "a 304 is never stored: it has no body to serve to others",
            )),
            Some((206, int)) => errors.push(syn::Error::new(
                int.span(),
                "a 206 is never stored: it holds part of a page, which would be served \
                 to requests for all of it",
            )),
            Some((code, int)) if (100..=199).contains(&code) => errors.push(syn::Error::new(
                int.span(),
                "a 1xx status is never stored: it is not a final response",
            )),
            Some((code, int)) if (200..=599).contains(&code) => {
                codes.push(LitInt::new(&format!("{code}u16"), int.span()));
            }
            _ => errors.push(syn::Error::new(
                elem.span(),
                "expected a status code from 200 to 599",
            )),
        }
    }
    if codes.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            value.span(),
            "`statuses` needs at least one status code",
        ));
    }
    match combine(errors) {
        Some(error) => Err(error),
        None => Ok(codes),
    }
}

/// `crate`: a string literal holding a path.
fn crate_path(value: &Expr) -> syn::Result<Path> {
    let Some(lit) = string(value) else {
        return Err(syn::Error::new(
            value.span(),
            "`crate` takes a path as a string literal, e.g. `crate = \"my_cache\"`",
        ));
    };
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`crate` must be a path, such as `\"my_cache\"`; `{:?}` is not",
                lit.value()
            ),
        )
    })
}

/// The string literal `value` is, if it is one.
fn string(value: &Expr) -> Option<LitStr> {
    match literal(value) {
        Some((Lit::Str(lit), false)) => Some(lit.clone()),
        _ => None,
    }
}

/// The literal `value` is, and whether it is negated (`-5`). Looks through the
/// invisible groups `macro_rules!` puts around an `$e:expr`.
fn literal(value: &Expr) -> Option<(&Lit, bool)> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some((lit, false)),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            literal(&unary.expr).map(|(lit, _)| (lit, true))
        }
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn describe(lit: &Lit) -> &'static str {
    match lit {
        Lit::Str(_) => "a string literal",
        Lit::ByteStr(_) | Lit::CStr(_) => "a byte string literal",
        Lit::Byte(_) => "a byte literal",
        Lit::Char(_) => "a character literal",
        Lit::Int(_) => "an integer literal",
        Lit::Float(_) => "a float literal",
        Lit::Bool(_) => "a boolean literal",
        _ => "a literal",
    }
}

fn path_to_string(path: &Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|s| s.ident.unraw().to_string())
        .collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

/// Skips an unknown argument's value (`= expr`, `(...)`, or nothing), up to the next
/// top-level comma, so the arguments after it are still checked.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use syn::Ident;

    use super::*;

    fn parse(tokens: TokenStream) -> Args {
        match Args::parse(tokens) {
            Ok(args) => args,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    /// Every message, in order.
    fn errors(tokens: TokenStream) -> Vec<String> {
        match Args::parse(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn text(tokens: impl quote::ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    #[test]
    fn all_arguments() {
        let args = parse(quote!(
            timeout = 3600,
            key = path_key,
            group = "views",
            group = tenant,
            prefix = "p",
            store = "reports",
            crate = "my_alias"
        ));
        assert!(matches!(&args.timeout, Some(Timeout::Secs(s)) if s.to_string() == "3600u64"));
        assert_eq!(text(args.key.as_ref()), "path_key");
        assert_eq!(args.groups.len(), 2);
        assert!(matches!(&args.groups[0], Part::Fixed(s) if s.value() == "views"));
        assert!(matches!(&args.groups[1], Part::Computed(e) if text(e) == "tenant"));
        assert!(matches!(&args.prefix, Some(Part::Fixed(s)) if s.value() == "p"));
        assert_eq!(
            args.store.as_ref().map(LitStr::value).as_deref(),
            Some("reports")
        );
        assert_eq!(text(args.krate.as_ref()), "my_alias");
    }

    #[test]
    fn defaults() {
        let args = parse(quote!(timeout = 1));
        assert!(
            args.krate.is_none()
                && args.key.is_none()
                && args.prefix.is_none()
                && args.store.is_none()
        );
        assert!(args.groups.is_empty());
    }

    #[test]
    fn timeout_forms() {
        let args = parse(quote!(timeout = 60 * 15));
        assert!(matches!(&args.timeout, Some(Timeout::Expr(e)) if text(e) == "60 * 15"));
        let args = parse(quote!(timeout = 30u32));
        assert!(matches!(&args.timeout, Some(Timeout::Secs(s)) if s.to_string() == "30u32"));
        let args = parse(quote!(timeout = by_status));
        assert!(matches!(&args.timeout, Some(Timeout::Expr(e)) if text(e) == "by_status"));
    }

    #[test]
    fn the_crate_docs_name_every_argument() {
        let docs = include_str!("lib.rs");
        let list = docs
            .split("# Arguments")
            .nth(1)
            .expect("an Arguments section")
            .split("defaults are in the table")
            .next()
            .unwrap();
        for (name, ..) in ARGS {
            assert!(
                list.contains(&format!("`{name}`")),
                "`{name}` is not listed"
            );
        }
        let listed = list.matches('`').count() / 2;
        assert_eq!(
            listed,
            ARGS.len(),
            "the list names arguments that do not exist"
        );
    }

    #[test]
    fn grace_forms() {
        let args = parse(quote!(timeout = 60, grace = 30));
        assert!(matches!(&args.grace, Some(Grace::Secs(s)) if s.to_string() == "30u64"));
        let args = parse(quote!(timeout = 60, grace = 0));
        assert!(matches!(&args.grace, Some(Grace::Secs(s)) if s.to_string() == "0u64"));
        let args = parse(quote!(timeout = 60, grace = GRACE));
        assert!(matches!(&args.grace, Some(Grace::Expr(e)) if text(e) == "GRACE"));
        let args = parse(quote!(timeout = 60, grace = 60 * 5));
        assert!(matches!(&args.grace, Some(Grace::Expr(e)) if text(e) == "60 * 5"));
        assert_eq!(
            errors(quote!(timeout = 60, grace = -5)),
            [
                "`grace` takes a number of seconds or a `u64` constant, e.g. `grace = 30`, not a negative number"
            ]
        );
        assert_eq!(
            errors(quote!(timeout = 60, grace = 1.5)),
            [
                "`grace` takes a number of seconds or a `u64` constant, e.g. `grace = 30`, not a float literal"
            ]
        );
    }

    #[test]
    fn computed_prefix_and_key_call() {
        let args = parse(quote!(
            timeout = 1,
            key = keys::query_params(&["page"]),
            prefix = f
        ));
        assert_eq!(
            text(args.key.as_ref()),
            "keys :: query_params (& [\"page\"])"
        );
        assert!(matches!(&args.prefix, Some(Part::Computed(e)) if text(e) == "f"));
    }

    #[test]
    fn missing_timeout() {
        assert_eq!(
            errors(quote!()),
            ["missing `timeout`: add `timeout = <seconds>`"]
        );
        assert_eq!(
            errors(quote!(key = k)),
            ["missing `timeout`: add `timeout = <seconds>`"]
        );
    }

    #[test]
    fn every_error_is_reported() {
        assert_eq!(
            errors(quote!(
                timeout = 0,
                foo = 1,
                bar(x, y),
                key = "k",
                group = "",
                group = 1,
                prefix = 2.5,
                store = name,
                crate = "not a path",
                timeout = 5
            )),
            [
                "timeout must be at least 1 second",
                "unknown argument `foo`; expected one of: timeout, key, group, prefix, store, crate, statuses, only_if, authorized, tag, grace",
                "unknown argument `bar`; expected one of: timeout, key, group, prefix, store, crate, statuses, only_if, authorized, tag, grace",
                "`key` takes a function, not a string literal",
                "`group` cannot be an empty string",
                "`group` takes a string literal or a function of the request, not an integer literal",
                "`prefix` takes a string literal or a function of the request, not a float literal",
                "`store` takes the name of an installed cache as a string literal, e.g. `store = \"reports\"`",
                "`crate` must be a path, such as `\"my_cache\"`; `\"not a path\"` is not",
                "`timeout` is specified more than once",
            ]
        );
    }

    #[test]
    fn statuses_that_are_never_stored() {
        assert_eq!(
            errors(quote!(
                timeout = 60,
                statuses = [200, 304, 206, 101, 42, 404]
            )),
            [
                "a 304 is never stored: it has no body to serve to others",
                "a 206 is never stored: it holds part of a page, which would be served to requests for all of it",
                "a 1xx status is never stored: it is not a final response",
                "expected a status code from 200 to 599",
            ]
        );
        let args = parse(quote!(timeout = 60, statuses = [200, 404, 599]));
        let codes: Vec<u16> = (args.statuses.iter().flatten())
            .map(|code| code.base10_parse().unwrap())
            .collect();
        assert_eq!(codes, [200, 404, 599]);
    }

    #[test]
    fn bad_timeouts() {
        assert_eq!(
            errors(quote!(timeout = -5)),
            ["timeout must be at least 1 second"]
        );
        assert_eq!(
            errors(quote!(timeout = "60")),
            [
                "`timeout` takes a number of seconds or a function of the response, not a string literal"
            ]
        );
        assert_eq!(
            errors(quote!(timeout = true)),
            [
                "`timeout` takes a number of seconds or a function of the response, not a boolean literal"
            ]
        );
    }

    #[test]
    fn duplicates_except_group() {
        for name in ["key", "prefix", "store", "crate"] {
            let name = Ident::new(name, Span::call_site());
            let value = if name == "key" {
                quote!(k)
            } else {
                quote!("x")
            };
            assert_eq!(
                errors(quote!(timeout = 1, #name = #value, #name = #value)),
                [format!("`{name}` is specified more than once")]
            );
        }
        assert_eq!(
            parse(quote!(timeout = 1, group = "a", group = "b"))
                .groups
                .len(),
            2
        );
    }

    #[test]
    fn syntax_errors_stop_parsing() {
        assert_eq!(
            errors(quote!(3600)),
            ["unexpected literal in nested attribute, expected ident"]
        );
        assert_eq!(errors(quote!(timeout)), ["expected `=`"]);
    }
}
