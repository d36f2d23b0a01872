use cache_page_runtime::cache_page;

#[cache_page(timeout = 60)]
pub fn handler() -> &'static str {
    ""
}

fn main() {}
