"""What both sides of the A2A comparison share: the message they exchange."""

from a2a.types import Message, Part, Role

CONTEXT_ID = 'ctx'


def text_message(message_id: str, role: Role, text: str) -> Message:
    """An A2A 1.0 Message with one text part: the shape the Omega agents exchange."""
    return Message(
        message_id=message_id,
        context_id=CONTEXT_ID,
        role=role,
        parts=[Part(text=text)],
    )


def only_text(message: Message) -> str:
    """The text of a one-part text message; anything else is an error."""
    if len(message.parts) != 1 or not message.parts[0].HasField('text'):
        raise ValueError(f'expected one text part, got {message}')
    return message.parts[0].text
