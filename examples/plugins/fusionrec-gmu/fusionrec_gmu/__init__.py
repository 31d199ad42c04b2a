"""fusionrec-gmu: an example fusionrec plugin providing the ``gmu.gated_unit`` fuser.

The plugin itself is :mod:`fusionrec_gmu.plugin` (named by the ``fusionrec`` entry point); the torch module is
:class:`fusionrec_gmu.fuser.GatedMultimodalUnit`, imported only when a pipeline builds the fuser. Nothing is
imported here, so loading the plugin stays cheap.
"""
