use cache_page_runtime::cache_page;

#[cache_page(timeout = 60, timeout = 120)]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
