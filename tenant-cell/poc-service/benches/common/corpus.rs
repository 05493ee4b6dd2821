//! The synthetic PoC corpus shared by the search benchmark and the engine profile: names and
//! descriptions from a fixed vocabulary, skewed language and tag popularity, a quarter private.
//! Deterministic, so every run indexes the same corpus.

pub const LANGUAGES: &[&str] = &[
    "rust",
    "typescript",
    "go",
    "python",
    "kotlin",
    "swift",
    "java",
    "c++",
    "elixir",
    "ruby",
    "scala",
    "zig",
];

pub const WORDS: &[&str] = &[
    "kubernetes",
    "operator",
    "realtime",
    "whiteboard",
    "payment",
    "gateway",
    "parser",
    "compiler",
    "scheduler",
    "search",
    "engine",
    "stream",
    "ledger",
    "cache",
    "proxy",
    "router",
    "telemetry",
    "dashboard",
    "invoice",
    "checkout",
    "recommendation",
    "vector",
    "embedding",
    "sync",
    "offline",
    "mobile",
    "camera",
    "audio",
    "video",
    "transcoder",
    "queue",
    "workflow",
    "notebook",
    "graph",
    "planner",
    "chatbot",
    "crawler",
    "billing",
    "identity",
    "gateway",
    "ingest",
    "warehouse",
    "lakehouse",
    "feature",
    "flags",
    "canary",
    "rollout",
    "observability",
    "tracing",
];

const FRAMEWORKS: &[&str] = &["axum", "react", "spring", "django", "phoenix"];

/// xorshift64: deterministic pseudo-random numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// Skewed towards the first items, like real language and tag popularity.
    pub fn skewed<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let a = self.next() % items.len() as u64;
        let b = self.next() % items.len() as u64;
        items[a.min(b) as usize]
    }
}

/// One generated PoC.
pub struct Generated {
    pub name: String,
    pub description: String,
    pub language: &'static str,
    pub tags: Vec<String>,
    pub framework: &'static str,
    pub private: bool,
}

/// The `n`-th PoC of the corpus (1–4 of 200 tags, `tag000` the most popular).
pub fn generate(rng: &mut Rng, n: usize) -> Generated {
    let name = format!("{} {} {n}", rng.pick(WORDS), rng.pick(WORDS));
    let description = format!(
        "{} {} {}",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(WORDS)
    );
    let language = rng.skewed(LANGUAGES);
    let tags = (0..1 + rng.next() % 4)
        .map(|_| {
            let (a, b) = (rng.next() % 200, rng.next() % 200);
            format!("tag{:03}", a.min(b))
        })
        .collect();
    let framework = rng.pick(FRAMEWORKS);
    let private = rng.next().is_multiple_of(4);
    Generated {
        name,
        description,
        language,
        tags,
        framework,
        private,
    }
}
