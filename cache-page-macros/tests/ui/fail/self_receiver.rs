use cache_page_runtime::cache_page;

pub struct Pages;

impl Pages {
    #[cache_page(timeout = 60)]
    pub async fn handler(&self) -> &'static str {
        ""
    }
}

fn main() {}
