"""An A2A echo agent on loopback: answers every message with a message carrying the same text
in the same context (role agent). Binds 127.0.0.1 on a free port, prints `{"port": N}` on
stdout once it listens, and serves until killed."""

import json
import socket
import sys

import uvicorn
import uvloop
from starlette.applications import Starlette

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Role

from common import only_text, text_message


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        request = context.message
        reply = text_message(
            'r' + request.message_id, Role.ROLE_AGENT, only_text(request)
        )
        await event_queue.enqueue_event(reply)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError('echo answers at once; nothing to cancel')


def card(url: str) -> AgentCard:
    return AgentCard(
        name='echo',
        description='Answers every message with its text',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(protocol_binding='JSONRPC', protocol_version='1.0', url=url)
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='echo', name='echo', description='echoes text', tags=['echo']
            )
        ],
    )


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (Linux): without it the response's second write waits
    # for the client's delayed ACK, 40 ms a round trip, which would measure TCP, not A2A.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    agent_card = card(f'http://127.0.0.1:{port}/')
    handler = DefaultRequestHandler(
        agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=agent_card
    )
    app = Starlette(
        routes=create_agent_card_routes(agent_card)
        + create_jsonrpc_routes(handler, rpc_url='/')
    )
    config = uvicorn.Config(app, log_level='warning', access_log=False)
    server = uvicorn.Server(config)
    sock.listen(128)
    print(json.dumps({'port': port}), flush=True)
    await server.serve(sockets=[sock])


if __name__ == '__main__':
    # uvloop and httptools (uvicorn's fast path) make the A2A side as quick as it gets.
    sys.exit(uvloop.run(main()))
