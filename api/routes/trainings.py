"""Training completions at the four levels (province, city, district, community)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import ConfigDict, Field

from api.after_schema import SOME_DAY, SOME_TEXT, after_schema
from api.deps import RecorderWriter, ServicesDep, origin_of
from api.limits import StrictBodyRoute
from api.schemas import Body, Created, Day, Id, Text
from ledger.catalogue import TrainingAudience, TrainingForm, TrainingLevel

router = APIRouter(prefix="/v1/training-completions", tags=["trainings"],
                   route_class=StrictBodyRoute)


class TrainingIn(Body):
    volunteer_id: Id
    level: TrainingLevel
    form: TrainingForm
    audience: TrainingAudience
    title: Text
    completed_on: Day
    # A JSON number, finite: neither `true` nor `"4"` is taken for one.
    hours: Annotated[float, Field(gt=0, le=720, strict=True, allow_inf_nan=False)]

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "volunteer_id": "vol-…", "level": "district", "form": "centralised",
        "audience": "core", "title": "网络文明传播志愿者培训班", "completed_on": "2017-05-20",
        "hours": 4}]})


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Created,
             responses={200: {"model": Created,
                              "description": "The same completion was already recorded."}})
@after_schema(TrainingIn, lambda ledger, v, held: ledger.training_fields(
    v.get("level", "district"), v.get("form", "online"), v.get("audience", "general"),
    v.get("title", SOME_TEXT), v.get("completed_on", SOME_DAY), v.get("hours", 1.0),
    refused=held))
def complete_training(body: TrainingIn, actor: RecorderWriter, services: ServicesDep,
                      response: Response) -> dict[str, Any]:
    """Record a training a volunteer completed (its hours are kept apart from service hours);
    the same completion again answers 200 with the original's id and position."""
    written = services.ledger.complete_training(
        origin_of(actor), body.volunteer_id, body.level.value, body.form.value,
        body.audience.value, body.title, body.completed_on, body.hours)
    if not written.created:
        response.status_code = status.HTTP_200_OK
    return services.written(written)
