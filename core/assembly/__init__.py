"""The assembly floor: pipeline files (YAML → :class:`~fusionrec.core.assembly.config.PipelineSpec`), their JSON
Schema, the stage plan, and loading a pipeline's data through its dataset and split plugins.

Above the interface floor and the registry; below the engine. Never imports a concrete plugin.
"""
