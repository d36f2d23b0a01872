//! Expansion: the handler keeps its name, visibility, attributes, generics and
//! arguments; its last argument is wrapped in `WithCache` (which captures the request
//! head for the cache), its body is wrapped in `async move { ... }` and handed to the
//! runtime's `serve` with a `PageConfig` built once in a `static`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens as _, quote, quote_spanned};
use syn::{
    AttrStyle, FnArg, Ident, ItemFn, LitInt, ReturnType, Type, TypeInfer, punctuated::Pair,
    spanned::Spanned as _, visit_mut::VisitMut,
};

use crate::args::{self, Args, Grace, Part, Timeout};

/// Expands `#[cache_page(args)] item`. On error, the errors and the original item.
pub(crate) fn cache_page(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = syn::parse2::<ItemFn>(item.clone()).map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            "#[cache_page] must be placed on an `async fn` handler",
        )
    });
    let args = Args::parse(args);
    let checked = function.and_then(|function| check(&function).map(|()| function));
    match (args, checked) {
        (Ok(args), Ok(function)) => expand(&args, function),
        (args, function) => {
            let errors = args::combine(args.err().into_iter().chain(function.err()));
            let mut tokens = item;
            tokens.extend(errors.map(syn::Error::into_compile_error));
            tokens
        }
    }
}

/// What makes a function unusable as a cached handler, whatever the arguments.
fn check(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let not_async = sig.asyncness.is_none().then(|| {
        syn::Error::new(
            sig.fn_token.span,
            "#[cache_page] must be placed on an `async fn` handler",
        )
    });
    let receiver = sig.receiver().map(|receiver| {
        syn::Error::new(
            receiver.self_token.span,
            "#[cache_page] handlers cannot take `self`; axum handlers are free functions",
        )
    });
    match args::combine(not_async.into_iter().chain(receiver)) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn expand(args: &Args, function: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    // syn moves a body's inner attributes (`#![allow(...)]`) into `attrs`.
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Inner(_)));
    let root = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::cache_page_runtime));
    let private = quote!(#root::__private);
    // Mixed-site: the user's body cannot see (or shadow) it.
    let request = Ident::new("__cache_page_request", Span::mixed_site());

    let cached_arg: FnArg = match sig.inputs.pop().map(Pair::into_value) {
        Some(FnArg::Typed(mut arg)) => {
            let (pat, ty) = (&arg.pat, &arg.ty);
            arg.pat = Box::new(syn::parse_quote!(#private::WithCache(#pat, #request)));
            arg.ty = Box::new(syn::parse_quote!(#private::WithCache<#ty>));
            FnArg::Typed(arg)
        }
        // `check` has refused receivers already; there are none here.
        Some(receiver @ FnArg::Receiver(_)) => receiver,
        None => syn::parse_quote!(#private::WithCache((), #request): #private::WithCache<()>),
    };
    sig.inputs.push(cached_arg);

    let (ret_span, ret_type) = match &sig.output {
        ReturnType::Default => (Span::call_site(), quote!(())),
        ReturnType::Type(_, ty) => {
            let mut ty = (**ty).clone();
            EraseImplTrait.visit_type_mut(&mut ty);
            (ty.span(), ty.into_token_stream())
        }
    };
    // Erasing `impl Trait` would leave the user's `use` of the trait unused (a warning
    // in their crate): name the declared type once more, in an uncalled function whose
    // argument may be `impl Trait`. Not for generic or `Self`-typed returns, which a
    // nested function cannot name.
    let keep_trait_used = match &sig.output {
        ReturnType::Type(_, ty)
            if ty.to_token_stream().to_string() != ret_type.to_string()
                && sig.generics.params.is_empty()
                && !mentions_self(ty.to_token_stream()) =>
        {
            quote_spanned! {ret_span=>
                #[allow(dead_code, clippy::needless_pass_by_value)]
                fn __cache_page_return_type(_: #ty) {}
            }
        }
        _ => TokenStream::new(),
    };
    let arrow = match &sig.output {
        ReturnType::Type(arrow, _) => *arrow,
        ReturnType::Default => syn::Token![->](Span::call_site()),
    };
    sig.output = ReturnType::Type(arrow, Box::new(syn::parse_quote!(#private::Response)));

    let config = config(args, &private);
    let stmts = &block.stmts;
    // The fake return (tracing-attributes' trick): `?` and `return` in the body infer
    // the handler's declared return type, as they would without the attribute.
    let fake_return = quote_spanned! {ret_span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable,
        )]
        if false {
            let __cache_page_fake_return: #ret_type = loop {};
            return __cache_page_fake_return;
        }
    };
    // Spanned at the return type, path included: a body that is not `IntoResponse` is
    // an error there, and only there.
    let serve_fn = respan(quote!(#private::serve), ret_span);
    let serve = quote_spanned! {ret_span=>
        #serve_fn(&__CACHE_PAGE_CONFIG, #request, async move {
            #fake_return
            #(#stmts)*
        })
        .await
    };

    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #keep_trait_used
            static __CACHE_PAGE_CONFIG: #private::LazyLock<#private::PageConfig> =
                #private::LazyLock::new(|| { #config });
            #serve
        }
    }
}

/// The `PageConfig` builder expression; each call is spanned at the user's value so a
/// type error lands on it.
fn config(args: &Args, private: &TokenStream) -> TokenStream {
    let mut config = match &args.timeout {
        Some(Timeout::Secs(secs)) => {
            quote_spanned!(secs.span()=> #private::PageConfig::new(#secs))
        }
        Some(Timeout::Expr(expr)) => {
            quote_spanned!(expr.span()=> #private::PageConfig::new(#expr))
        }
        // `Args::parse` refuses a missing timeout; this is never reached.
        None => quote!(#private::PageConfig::new(0u64)),
    };
    if let Some(key) = &args.key {
        config.extend(quote_spanned!(key.span()=> .key(#key)));
    }
    for group in &args.groups {
        config.extend(match group {
            Part::Fixed(lit) => quote_spanned!(lit.span()=> .group(#lit)),
            Part::Computed(expr) => quote_spanned!(expr.span()=> .group_fn(#expr)),
        });
    }
    if let Some(prefix) = &args.prefix {
        config.extend(match prefix {
            Part::Fixed(lit) => quote_spanned!(lit.span()=> .prefix(#lit)),
            Part::Computed(expr) => quote_spanned!(expr.span()=> .prefix_fn(#expr)),
        });
    }
    if let Some(store) = &args.store {
        config.extend(quote_spanned!(store.span()=> .store(#store)));
    }
    if let Some(statuses) = &args.statuses {
        let span = statuses.first().map_or_else(Span::call_site, LitInt::span);
        config.extend(quote_spanned!(span=> .statuses(&[#(#statuses),*])));
    }
    if let Some(only_if) = &args.only_if {
        config.extend(quote_spanned!(only_if.span()=> .only_if(#only_if)));
    }
    if let Some(authorized) = &args.authorized {
        config.extend(quote_spanned!(authorized.span()=> .authorized(#authorized)));
    }
    for tag in &args.tags {
        config.extend(match tag {
            Part::Fixed(lit) => quote_spanned!(lit.span()=> .tag(#lit)),
            Part::Computed(expr) => quote_spanned!(expr.span()=> .tag_fn(#expr)),
        });
    }
    match &args.grace {
        Some(Grace::Secs(secs)) => config.extend(quote_spanned!(secs.span()=> .grace(#secs))),
        Some(Grace::Expr(expr)) => config.extend(quote_spanned!(expr.span()=> .grace(#expr))),
        None => {}
    }
    config
}

/// Whether `tokens` name `Self` anywhere.
fn mentions_self(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "Self",
        TokenTree::Group(group) => mentions_self(group.stream()),
        _ => false,
    })
}

/// `tokens`, every one of them at `span`. Resolution is unchanged: both the
/// attribute's span and a span in the user's signature resolve at the call site.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// Replaces every `impl Trait` in a type with `_`, which a `let` can annotate.
struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            let underscore_token = syn::Token![_](impl_trait.impl_token.span);
            *ty = Type::Infer(TypeInfer { underscore_token });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn full_expansion() {
        let out = cache_page(
            quote!(
                timeout = 3600,
                key = path_key,
                group = "views",
                group = tenant_group,
                prefix = "p"
            ),
            quote! {
                /// Docs.
                pub async fn product_list(State(db): State<Db>, Query(q): Query<Page>) -> impl IntoResponse {
                    body(db, q)
                }
            },
        );
        let expected = quote! {
                /// Docs.
                pub async fn product_list(
                    State(db): State<Db>,
                    ::cache_page_runtime::__private::WithCache(Query(q), __cache_page_request):
                        ::cache_page_runtime::__private::WithCache<Query<Page> >
                ) -> ::cache_page_runtime::__private::Response {
                    #[allow(dead_code, clippy::needless_pass_by_value)]
                    fn __cache_page_return_type(_: impl IntoResponse) {}
                    static __CACHE_PAGE_CONFIG:
                        ::cache_page_runtime::__private::LazyLock<::cache_page_runtime::__private::PageConfig> =
                        ::cache_page_runtime::__private::LazyLock::new(|| {
                            ::cache_page_runtime::__private::PageConfig::new(3600u64)
                                .key(path_key)
                                .group("views")
                                .group_fn(tenant_group)
                                .prefix("p")
                        });
                    ::cache_page_runtime::__private::serve(&__CACHE_PAGE_CONFIG, __cache_page_request, async move {
                        #[allow(
                            unknown_lints,
                            unreachable_code,
                            clippy::diverging_sub_expression,
                            clippy::empty_loop,
                            clippy::let_unit_value,
                            clippy::let_with_type_underscore,
                            clippy::needless_return,
                            clippy::unreachable,
                        )]
                        if false {
                            let __cache_page_fake_return: _ = loop {};
                            return __cache_page_fake_return;
                        }
                        body(db, q)
                    })
                    .await
                }
        };
        assert_eq!(out.to_string(), expected.to_string());
    }

    #[test]
    fn no_arguments_no_return_type_renamed_crate() {
        let out = cache_page(
            quote!(timeout = secs, store = "s", crate = "my_alias"),
            quote!(
                async fn f() {}
            ),
        )
        .to_string();
        let expected = quote! {
            async fn f(my_alias::__private::WithCache((), __cache_page_request): my_alias::__private::WithCache<()>)
                -> my_alias::__private::Response
        };
        assert!(out.starts_with(&expected.to_string()), "{out}");
        assert!(
            out.contains(
                &quote!(my_alias::__private::PageConfig::new(secs).store("s")).to_string()
            ),
            "{out}"
        );
        assert!(
            out.contains(&quote!(let __cache_page_fake_return: () = loop {};).to_string()),
            "{out}"
        );
        assert!(!out.contains("cache_page_runtime"), "{out}");
    }

    #[test]
    fn impl_trait_is_erased_everywhere() {
        let out = cache_page(
            quote!(timeout = 1),
            quote!(
                async fn f() -> Result<impl IntoResponse, (StatusCode, impl Display)> {
                    todo!()
                }
            ),
        )
        .to_string();
        let fake = quote!(let __cache_page_fake_return: Result<_, (StatusCode, _)> = loop {};);
        assert!(out.contains(&fake.to_string()), "{out}");
    }

    #[test]
    fn errors_keep_the_original_function() {
        let item = quote!(
            fn f(&self) -> u8 {
                1
            }
        );
        let out = cache_page(quote!(timeout = 0, foo = 1), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        for message in [
            "timeout must be at least 1 second",
            "unknown argument `foo`",
            "must be placed on an `async fn` handler",
            "cannot take `self`",
        ] {
            assert!(out.contains(message), "{message} not in {out}");
        }
    }

    #[test]
    fn not_a_function() {
        let item = quote!(
            struct S;
        );
        let out = cache_page(quote!(timeout = 1), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(
            out.contains("must be placed on an `async fn` handler"),
            "{out}"
        );
    }
}
