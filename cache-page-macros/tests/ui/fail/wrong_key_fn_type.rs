use cache_page_runtime::cache_page;

pub fn by_path(path: &str) -> String {
    path.to_owned()
}

#[cache_page(timeout = 60, key = by_path)]
pub async fn handler() -> &'static str {
    ""
}

fn main() {}
