use cache_page_runtime::cache_page;

#[cache_page(timeout = 60, grace = "30")]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
