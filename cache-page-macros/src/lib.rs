//! Placeholder; replaced by the real macro crate.
use proc_macro::TokenStream;
#[proc_macro_attribute]
pub fn cache_page(_args: TokenStream, item: TokenStream) -> TokenStream { item }
