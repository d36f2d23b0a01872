use cache_page_runtime::cache_page;

const GRACE: i32 = 30;

#[cache_page(timeout = 60, grace = GRACE)]
async fn handler() -> &'static str {
    "hello"
}

fn main() {}
