// Lists the profiles the core reads from the config file. No secrets ever reach this page.
const { invoke } = window.__TAURI__.core;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

async function load() {
  const body = document.querySelector("#profiles tbody");
  try {
    const profiles = await invoke("list_profiles");
    body.replaceChildren(
      ...profiles.map((p) => {
        const tr = document.createElement("tr");
        tr.dataset.profile = p.name;
        tr.append(cell(p.name, "name"), cell(p.preset), cell(p.scheme), cell(p.base_url));
        return tr;
      }),
    );
    document.getElementById("empty").hidden = profiles.length > 0;
    document.getElementById("status").textContent = `${profiles.length} profile(s)`;
  } catch (e) {
    const err = document.getElementById("error");
    err.textContent = e.message ?? String(e);
    err.hidden = false;
  }
  document.body.dataset.loaded = "true";
}

load();
