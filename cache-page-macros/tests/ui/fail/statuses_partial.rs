use cache_page_runtime::cache_page;

#[cache_page(timeout = 60, statuses = [200, 206])]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
