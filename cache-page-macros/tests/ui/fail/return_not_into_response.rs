use cache_page_runtime::cache_page;

pub struct NotAResponse;

#[cache_page(timeout = 60)]
pub async fn handler() -> NotAResponse {
    NotAResponse
}

fn main() {}
