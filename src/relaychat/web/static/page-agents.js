// The agents page: the agents you may use, a form to create or change yours (instructions,
// endpoint and model, parameters, visibility, tools), and "Chat" to open a conversation
// with one. Tools are picked one by one — this instance's own and each MCP server's, under
// their server with its state — or a whole server at once.
import { api } from "./api.js";
import { bindForm, confirmAction, h, labelled, pill, section, table, useStyles, when } from "./ui.js";

// Generation settings an agent may carry in `model_parameters` (what a reply honours).
const PARAMETERS = [
  { name: "temperature", label: "Temperature", min: 0, max: 2, step: 0.1, hint: "0–2; empty: the model's default" },
  { name: "top_p", label: "Top p", min: 0, max: 1, step: 0.05, hint: "0–1; empty: the model's default" },
  { name: "max_tokens", label: "Max output tokens", min: 1, step: 1, hint: "empty: the endpoint's default" },
];
const STATE_TONE = { running: "good", failed: "bad", starting: "warn", disabled: "" };

let state = null;

export async function mount(root, ctx) {
  useStyles("page-agents.css");
  state = { root, ctx, agents: [], endpoints: [], catalog: { tools: [], servers: [] }, editing: null };
  const [agents, endpoints, catalog] = await Promise.all([
    api("GET", "/api/agents"),
    api("GET", "/api/endpoints"),
    loadCatalog(0),
  ]);
  state.agents = agents.agents;
  state.endpoints = endpoints.endpoints.filter((e) => e.name !== "agents" && e.available !== false);
  state.catalog = catalog;
  render();
  if (ctx.sub === "new") openForm(null);
  else if (ctx.sub) {
    const agent = state.agents.find((a) => a.agent_id === ctx.sub);
    if (agent && editable(agent)) openForm(agent);
  }
  // The servers that were still starting: ask again, waiting for them this time.
  if (catalog.servers.some((s) => s.state === "starting")) refreshServers();
  return () => {
    state = null;
  };
}

/** The tool catalogue, waiting at most `wait` seconds for MCP servers being started. */
async function loadCatalog(wait) {
  const answer = await api("GET", `/api/agents/tools?wait=${wait}`);
  return { tools: answer.tools || [], servers: answer.servers || [] };
}

async function refreshServers() {
  const mine = state;
  const catalog = await loadCatalog(10);
  if (state !== mine) return;
  state.catalog = catalog;
  const picker = state.root.querySelector(".tool-picker");
  if (picker) picker.replaceWith(toolPicker(currentSelection(picker)));
  const servers = state.root.querySelector(".servers");
  if (servers) servers.replaceWith(serverList());
}

function editable(agent) {
  return agent.owner_id === state.ctx.user.id || state.ctx.user.role === "admin";
}

function render() {
  const list = section(
    "Agents",
    h("div", { class: "toolbar" },
      h("p", { class: "muted grow" }, "Your agents and every public one. An agent answers with its instructions, model and tools."),
      h("button", { type: "button", class: "primary", onclick: () => openForm(null) }, "New agent"),
    ),
    agentTable(),
  );
  list.classList.add("agent-list");
  state.root.replaceChildren(list, h("div", { class: "agent-form-slot" }), serverList());
}

function agentTable() {
  return table(
    [
      { label: "Name", cell: (a) => h("div", {}, h("strong", {}, a.name), a.description ? h("div", { class: "muted small" }, a.description) : null) },
      { label: "Model", cell: (a) => `${a.endpoint} · ${a.model || "default model"}` },
      { label: "Tools", cell: (a) => toolSummary(a) },
      { label: "Visibility", cell: (a) => pill(a.visibility === "public" ? "public" : "private") },
      { label: "Changed", cell: (a) => when(a.updated_at) },
      {
        label: "Actions",
        cell: (a) => h("div", { class: "actions" },
          h("button", { type: "button", class: "small primary", onclick: () => chatWith(a), "aria-label": `Chat with ${a.name}` }, "Chat"),
          editable(a) ? h("button", { type: "button", class: "small", onclick: () => openForm(a), "aria-label": `Edit ${a.name}` }, "Edit") : null,
          editable(a) ? h("button", { type: "button", class: "small", onclick: () => remove(a), "aria-label": `Delete ${a.name}` }, "Delete") : null,
        ),
      },
    ],
    state.agents,
    "No agents yet: create one with “New agent”.",
  );
}

function toolSummary(agent) {
  const names = [...agent.tools, ...agent.mcp_servers.map((s) => `${s} (all)`)];
  if (!names.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "tool-names" }, names.join(", "));
}

async function chatWith(agent) {
  try {
    const convo = await api("POST", "/api/convos", { endpoint: "agents", agent_id: agent.agent_id, title: `Chat with ${agent.name}` });
    state.ctx.navigate(`/c/${encodeURIComponent(convo.conversation_id)}`);
  } catch (error) {
    showPageError(error);
  }
}

async function remove(agent) {
  const ok = await confirmAction(`Delete the agent “${agent.name}” and what it remembered? Conversations with it keep their messages.`);
  if (!ok) return;
  try {
    await api("DELETE", `/api/agents/${encodeURIComponent(agent.agent_id)}`);
    state.agents = state.agents.filter((a) => a.agent_id !== agent.agent_id);
    closeForm();
    render();
  } catch (error) {
    showPageError(error);
  }
}

function showPageError(error) {
  if (error?.status === 401) return;
  const note = h("p", { class: "error", role: "alert" }, error.message || String(error));
  state.root.querySelector(".agent-list")?.append(note);
  setTimeout(() => note.remove(), 8000);
}

function closeForm() {
  state.editing = null;
  state.root.querySelector(".agent-form-slot")?.replaceChildren();
  if (state.ctx.sub) history.replaceState(null, "", "/agents");
}

function openForm(agent) {
  state.editing = agent;
  const slot = state.root.querySelector(".agent-form-slot");
  const form = agentForm(agent);
  slot.replaceChildren(section(agent ? `Edit “${agent.name}”` : "New agent", form));
  form.elements.name.focus();
}

function endpointSelect(selected) {
  const select = h("select", { name: "endpoint", required: true });
  for (const endpoint of state.endpoints) {
    select.append(h("option", { value: endpoint.name, selected: endpoint.name === selected }, endpoint.name));
  }
  if (selected && !state.endpoints.some((e) => e.name === selected)) {
    select.append(h("option", { value: selected, selected: true }, `${selected} (not available)`));
  }
  return select;
}

function fillModels(select, endpointName, selected) {
  const endpoint = state.endpoints.find((e) => e.name === endpointName);
  const models = endpoint ? endpoint.models : [];
  const fallback = endpoint?.default_model ? `Endpoint default (${endpoint.default_model})` : "Endpoint default";
  select.replaceChildren(h("option", { value: "" }, fallback));
  for (const model of models) select.append(h("option", { value: model, selected: model === selected }, model));
  if (selected && !models.includes(selected)) select.append(h("option", { value: selected, selected: true }, selected));
}

function agentForm(agent) {
  const params = agent?.model_parameters || {};
  const endpoint = endpointSelect(agent?.endpoint || state.endpoints[0]?.name);
  const model = h("select", { name: "model" });
  fillModels(model, endpoint.value, agent?.model);
  endpoint.addEventListener("change", () => fillModels(model, endpoint.value, null));
  const form = h("form", { class: "agent-form" },
    h("div", { class: "form-grid" },
      labelled("Name", h("input", { name: "name", required: true, maxlength: 200, value: agent?.name || "", autocomplete: "off" })),
      labelled("Visibility", h("select", { name: "visibility" },
        h("option", { value: "private", selected: agent?.visibility !== "public" }, "Private: only you"),
        h("option", { value: "public", selected: agent?.visibility === "public" }, "Public: everyone on this server"),
      )),
      labelled("Endpoint", endpoint),
      labelled("Model", model),
    ),
    labelled("Description", h("input", { name: "description", maxlength: 2000, value: agent?.description || "" }), "Shown in the model picker and this list."),
    labelled("Instructions", h("textarea", { name: "instructions", rows: 6, maxlength: 100000 }, agent?.instructions || ""), "The system prompt the agent answers with."),
    h("fieldset", { class: "parameters" },
      h("legend", {}, "Parameters"),
      h("div", { class: "form-grid" },
        PARAMETERS.map((p) => labelled(p.label, h("input", {
          name: `model_parameters.${p.name}`,
          type: "number",
          min: p.min,
          max: p.max,
          step: p.step,
          value: params[p.name] ?? "",
          placeholder: "default",
        }), p.hint)),
      ),
    ),
    toolPicker({ tools: agent?.tools || [], servers: agent?.mcp_servers || [] }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, agent ? "Save agent" : "Create agent"),
      h("button", { type: "button", onclick: closeForm }, "Cancel"),
    ),
  );
  bindForm(form, save);
  return form;
}

/** What the picker has checked: `{ tools, servers }` as the API names them. */
function currentSelection(picker) {
  const tools = [...picker.querySelectorAll("input[data-tool]:checked")].map((i) => i.dataset.tool);
  const servers = [...picker.querySelectorAll("input[data-server]:checked")].map((i) => i.dataset.server);
  return { tools, servers };
}

function toolPicker(selected) {
  const { tools, servers } = state.catalog;
  const chosenTools = new Set(selected.tools);
  const chosenServers = new Set(selected.servers);
  const local = tools.filter((t) => t.source === "builtin" || t.source === "relaychat");
  const picker = h("fieldset", { class: "tool-picker", name: "tools" },
    h("legend", {}, "Tools"),
    h("input", { type: "hidden", name: "mcp_servers" }),
    h("div", { class: "tool-group" },
      h("h3", {}, "This server's tools"),
      local.map((tool) => toolCheck(tool.name, tool.name, tool.description, chosenTools.has(tool.name))),
    ),
  );
  const known = new Set(local.map((t) => t.name));
  for (const server of servers) {
    const group = h("div", { class: "tool-group mcp-server", dataset: { serverName: server.name } },
      h("h3", {}, `MCP server “${server.name}” `, pill(server.state, STATE_TONE[server.state] ?? "")),
      server.reason ? h("p", { class: "server-reason error" }, server.reason) : null,
      h("label", { class: "check" },
        h("input", { type: "checkbox", dataset: { server: server.name }, checked: chosenServers.has(server.name) }),
        h("span", {}, h("strong", {}, "All of its tools"), h("span", { class: "muted" }, " — including tools it adds later")),
      ),
    );
    for (const tool of server.tools) {
      known.add(tool.name);
      group.append(toolCheck(tool.name, tool.remote_name || tool.name, tool.description, chosenTools.has(tool.name)));
    }
    // Tools the agent names that the server does not list now (it is down, or dropped
    // them): kept checked, so saving does not silently remove them.
    for (const name of selected.tools) {
      if (!known.has(name) && name.startsWith(`${server.name}__`)) {
        known.add(name);
        group.append(toolCheck(name, name.slice(server.name.length + 2), "Not listed by the server right now.", true));
      }
    }
    if (!server.tools.length && server.state !== "running") {
      group.append(h("p", { class: "muted small" }, "Its tools can be picked one by one once it runs."));
    }
    picker.append(group);
  }
  const orphans = selected.tools.filter((name) => !known.has(name));
  if (orphans.length) {
    picker.append(h("div", { class: "tool-group" },
      h("h3", {}, "No longer offered"),
      orphans.map((name) => toolCheck(name, name, "This server does not offer it any more.", true)),
    ));
  }
  if (servers.length) {
    picker.append(h("button", { type: "button", class: "small", onclick: refreshServers }, "Check MCP servers again"));
  }
  return picker;
}

function toolCheck(name, label, description, checked) {
  return h("label", { class: "check tool-option" },
    h("input", { type: "checkbox", dataset: { tool: name }, checked }),
    h("span", {}, h("code", {}, label), description ? h("span", { class: "muted" }, ` — ${description}`) : null),
  );
}

function parameters(form, patching) {
  const values = {};
  for (const p of PARAMETERS) {
    const raw = form.elements[`model_parameters.${p.name}`].value.trim();
    if (raw !== "") values[p.name] = Number(raw);
    // A PATCH merges parameters: null removes the ones the person cleared.
    else if (patching && p.name in (state.editing.model_parameters || {})) values[p.name] = null;
  }
  return values;
}

async function save(form) {
  const agent = state.editing;
  const { tools, servers } = currentSelection(form.querySelector(".tool-picker"));
  const body = {
    name: form.elements.name.value.trim(),
    description: form.elements.description.value.trim() || null,
    instructions: form.elements.instructions.value || null,
    endpoint: form.elements.endpoint.value,
    model: form.elements.model.value || null,
    model_parameters: parameters(form, Boolean(agent)),
    visibility: form.elements.visibility.value,
    tools,
    mcp_servers: servers,
  };
  let saved;
  if (agent) {
    saved = await api("PATCH", `/api/agents/${encodeURIComponent(agent.agent_id)}`, body);
    state.agents = state.agents.map((a) => (a.agent_id === saved.agent_id ? saved : a));
  } else {
    for (const key of ["description", "instructions", "model"]) if (body[key] === null) delete body[key];
    saved = await api("POST", "/api/agents", body);
    state.agents = [saved, ...state.agents];
  }
  closeForm();
  render();
  const row = [...state.root.querySelectorAll(".agent-list tbody tr")].find((tr) => tr.textContent.includes(saved.name));
  row?.classList.add("saved");
  state.root.querySelector(".agent-list")?.append(h("p", { class: "muted", role: "status" }, `Saved “${saved.name}”.`));
}

function serverList() {
  const { servers } = state.catalog;
  if (!servers.length) return h("div", { class: "servers" });
  const panel = section(
    "MCP servers",
    table(
      [
        { label: "Server", cell: (s) => h("code", {}, s.name) },
        { label: "State", cell: (s) => pill(s.state, STATE_TONE[s.state] ?? "") },
        { label: "Tools", cell: (s) => (s.tools.length ? String(s.tools.length) : "—") },
        { label: "Why", cell: (s) => (s.reason ? h("span", { class: "server-reason" }, s.reason) : h("span", { class: "muted" }, "—")) },
      ],
      servers,
    ),
  );
  panel.classList.add("servers");
  return panel;
}
