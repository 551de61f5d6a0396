"""The field types of a spec's ``[arguments]`` (pydantic): numbers finite, names non-empty,
unknown keys refused. TOML has nan and inf literals; an int is accepted where a float is
meant, text is not."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Number = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Name = Annotated[StrictStr, Field(min_length=1)]
Count = Annotated[StrictInt, Field(ge=1)]
Likelihood = Literal["marginal", "latent"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
