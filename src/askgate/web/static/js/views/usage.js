import { el } from "../dom.js";

export async function render(root) {
  root.append(el("h1", { text: "Coming soon" }));
}
