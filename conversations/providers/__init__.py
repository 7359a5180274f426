"""Model providers: the OpenAI-compatible servers the site calls (the environment's
default one, and others added in the admin), their models read from `GET {base}/models`,
and their keys, encrypted at rest."""
