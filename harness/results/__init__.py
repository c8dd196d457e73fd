"""Results: saved runs (`runs`), safe writes (`files`), their comparison (`compare`) and figures (`plots`)."""
