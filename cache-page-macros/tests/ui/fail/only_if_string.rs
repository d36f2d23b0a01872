use cache_page_runtime::cache_page;

#[cache_page(timeout = 60, only_if = "always")]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
