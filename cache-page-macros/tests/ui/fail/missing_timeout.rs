use cache_page_runtime::cache_page;

#[cache_page(key = cache_page_runtime::keys::path_key)]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
