"""View submissions: the copy modal and the deny modal.

The copy modal is validated inside the acknowledgement so that problems appear next to the
field at fault (`response_action: errors`); the request is recorded there too, because a name
already used by a live request is such a problem, and with it the outbox row that posts it.
A deny is decided inside the acknowledgement as well: committed before Slack hears back.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import BadInput, NotAllowed, SnapcopyError, UnknownRequest, WrongRequest
from bot.slack.errors import reports_errors, sentence_for
from bot.slack.forms import CopyModalInput, ModalMetadata, field_block
from bot.slack.home import publish_home
from bot.slack.ids import Action, Block, Callback
from bot.slack.services import Services


def register(app: App, services: Services) -> None:
    def submit_copy(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        view = body["view"]
        form_input = CopyModalInput.from_view(view)
        metadata = ModalMetadata.parse(view.get("private_metadata"))
        try:
            if not form_input.snapshot_id:
                raise BadInput("snapshot_id", "Pick an automated snapshot or paste its ID.")
            _ask(services, body["user"]["id"], form_input, metadata)
        except BadInput as error:
            ack(response_action="errors", errors={field_block(error.field): error.message})
            return
        except SnapcopyError as error:
            # Lost the role while the modal was open, or Slack could not say: on the first field.
            block = Block.SNAPSHOT_ID  # the first input: the picker's section takes no errors
            ack(response_action="errors", errors={block: sentence_for(error) or error.message})
            return
        ack()

    def decide_deny(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        # Refusals stay inside the modal, where the person is looking.
        view = body["view"]
        metadata = ModalMetadata.parse(view.get("private_metadata"))
        reason = (
            view["state"]["values"].get(Block.DENY_REASON, {}).get(Action.DENY_REASON, {})
        ).get("value")
        try:
            ref = metadata.ref()
            if ref is None:
                raise UnknownRequest("This form does not name a request.")
            services.copies.deny(ref, body["user"]["id"], (reason or "").strip(), audit=False)
        except SnapcopyError as error:
            text = sentence_for(error) or error.message
            ack(response_action="errors", errors={Block.DENY_REASON: text})
            context["refusal"] = error
            return
        context["denied_from_home"] = metadata.from_home
        ack()

    @reports_errors
    def after_deny(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        refusal = context.get("refusal")
        if isinstance(refusal, NotAllowed | WrongRequest):
            services.copies.audit_refusal(refusal)  # once Slack has its answer
        if context.get("denied_from_home"):
            publish_home(services, client, body["user"]["id"])

    app.view(Callback.COPY_MODAL)(submit_copy)
    app.view(Callback.DENY_MODAL)(services.after_ack(decide_deny, after_deny))


def _ask(services: Services, user: str, form: CopyModalInput, metadata: ModalMetadata) -> None:
    channel_id = form.channel_id or metadata.channel_id
    services.copies.ask(
        requested_by=user,
        snapshot_id=form.snapshot_id,
        backup_name=form.backup_name,
        description=form.description,
        reason=form.reason,
        channel_id=channel_id,
        # The thread of a shortcut, unless the person picked another channel.
        thread_ts=metadata.thread_ts if channel_id == metadata.channel_id else None,
        keep_until=form.keep_until,
        break_glass=form.break_glass,
    )
