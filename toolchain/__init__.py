"""tinydeploy's spine: the IR, importers, reference executor, pipeline, report and verify."""
