"""The demo's MCP servers, one per namespace (argv[1]), written with the official Python MCP
SDK (`mcp`, pinned in tool-gateway/servers/requirements.txt):

  fhir      search_patients: a tiny in-memory patient index (made-up people, no real data)
  calendar  book: books a follow-up slot and answers with a confirmation number
  mail      send: would send an e-mail (it only records the request); the demo policy never
            lets PHI reach it, and its request log shows that nothing did

Run by the tool gateway (agents/demo/tools.toml.in, scripts/run.sh); with env
MCP_REQUEST_LOG set, every line the server receives is appended to that file.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "tool-gateway", "servers"))

from mcp.server.mcpserver import MCPServer  # noqa: E402

from _common import run  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
app = MCPServer(MODE or "clinic")

PATIENTS = [
    {"id": "pat-0042", "family_name": "Smith", "given_name": "Ada", "ward": "cardiology"},
    {"id": "pat-0117", "family_name": "Smith", "given_name": "Ben", "ward": "oncology"},
    {"id": "pat-0203", "family_name": "Okafor", "given_name": "Chi", "ward": "cardiology"},
]

if MODE == "fhir":

    @app.tool(description="Search patients in the hospital FHIR server by family name")
    def search_patients(family_name: str, limit: int = 10) -> str:
        found = [p for p in PATIENTS if p["family_name"] == family_name][: max(limit, 0)]
        return json.dumps({"total": len(found), "patients": found})

elif MODE == "calendar":
    BOOKED = {}

    @app.tool(description="Book an appointment slot")
    def book(patient_id: str, slot: int, urgent: bool = False) -> str:
        if slot in BOOKED:
            return json.dumps({"booked": False, "reason": f"slot {slot} is taken"})
        BOOKED[slot] = patient_id
        return json.dumps({"booked": True, "slot": slot, "confirmation": f"C-{slot:04d}"})

elif MODE == "mail":

    @app.tool(description="Send an e-mail")
    def send(to: str, subject: str, body: str) -> str:
        return json.dumps({"queued": True})

else:
    sys.exit(f"usage: clinic.py fhir|calendar|mail (got {MODE!r})")

if __name__ == "__main__":
    run(app)
