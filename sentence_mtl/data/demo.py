"""The built-in demo tasks: six topics × three sentiments, each sentence labelled for both."""

DEMO_TASK_LABELS: dict[str, list[str]] = {
    "topic": ["business", "food", "health", "sports", "technology", "travel"],
    "sentiment": ["negative", "neutral", "positive"],
}
