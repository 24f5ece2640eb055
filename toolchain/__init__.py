"""tinydeploy's core (the IR, the op registry in ops/, lowering, the reference executors,
readers and writers, graph passes) and, in driver/, the top of the stack: CLI, pipeline, reports,
verify, bench."""
