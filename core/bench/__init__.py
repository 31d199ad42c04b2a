"""The benchmark floor: the code behind ``fusionrec bench`` (retrieval through FAISS and the retriever plugins).

On the engine's level: it may import the interfaces, the registry, the assembly and the engine; only the CLI imports it.
"""
